"""JSON API of accounts: register, log in for a bearer token, and the bearer check itself."""

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status
from ninja.security import HttpBearer

from apps.accounts.services import api_token_authenticate, api_token_issue, user_register
from fitness.api_common import ErrorOut, Text

router = Router(tags=["accounts"])


class BearerAuth(HttpBearer):
    """``Authorization: Bearer <token>`` with a token from ``POST /api/login``."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        """The customer the token belongs to; ``None`` (a 401) if unknown or expired."""
        return api_token_authenticate(token=token)


bearer_auth = BearerAuth()


class RegisterIn(Schema):
    username: Text
    email: Text
    password: Text


class CustomerOut(Schema):
    id: int
    username: str
    email: str


class LoginIn(Schema):
    username: Text
    password: Text


class TokenOut(Schema):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime


@router.post(
    "/register",
    response={201: CustomerOut, 422: ErrorOut},
    summary="Create a customer account",
    description="422 names every bad field: a taken username, an invalid e-mail, a weak password.",
)
def register(request: HttpRequest, payload: RegisterIn) -> Status[Any]:
    customer = user_register(
        username=payload.username, email=payload.email, password=payload.password
    )
    return Status(201, customer)


@router.post(
    "/login",
    response={200: TokenOut, 401: ErrorOut, 422: ErrorOut},
    summary="Exchange username and password for a bearer token",
    description="Send the token as `Authorization: Bearer <access_token>` until `expires_at`.",
)
def login(request: HttpRequest, payload: LoginIn) -> TokenOut:
    token, record = api_token_issue(username=payload.username, password=payload.password)
    return TokenOut(access_token=token, expires_at=record.expires_at)
