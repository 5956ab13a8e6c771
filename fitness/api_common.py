"""What every router of the JSON API shares: the money type, the error body and its handlers.

Every error the API returns has one shape, whoever raised it (ninja's schema validation, a
service, the auth check, a 404), so a client needs exactly one parser::

    {"detail": "Validation failed", "errors": [{"field": "card.number", "message": "..."}]}

``errors`` is empty when no particular field is to blame (401, 404, 409).
"""

from collections.abc import Iterable
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

from django.http import Http404, HttpRequest, HttpResponse
from ninja import Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from pydantic import AfterValidator, Field, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

from apps.accounts.services import InvalidCredentials, RegistrationInvalid
from apps.carts.exceptions import CartError, ItemNotInCart, ProductNotFound
from apps.orders.exceptions import OrderInvalid, OrderNotCancellable, OrderNotFound

if TYPE_CHECKING:
    from ninja import NinjaAPI

VALIDATION_FAILED = "Validation failed"

# Amounts travel as strings with exactly two decimals ("59.90"): a JSON number would be a
# binary float in most clients, and money must not be rounded on the way.
Money = Annotated[
    Decimal,
    PlainSerializer(lambda value: f"{value:.2f}", return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+\.\d{2}$", "examples": ["59.90"]}),
]


class FieldError(Schema):
    """One bad field: where it is (dotted path into the request body) and what is wrong."""

    field: str
    message: str


class ErrorOut(Schema):
    """The body of every error response."""

    detail: str
    errors: list[FieldError] = []


# The sources ninja puts first in an error's ``loc``; the body's parameter name follows it.
_PARAM_SOURCES = {"body", "query", "path", "header", "cookie", "form", "file"}
BODY_PARAM = "payload"


def error_response(
    api: "NinjaAPI",
    request: HttpRequest,
    *,
    status: int,
    detail: str,
    errors: Iterable[tuple[str, str]] = (),
) -> HttpResponse:
    """Render the uniform error body."""
    body = {"detail": detail, "errors": [{"field": f, "message": m} for f, m in errors]}
    return api.create_response(request, body, status=status)


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "payload", "card", "number")`` -> ``"card.number"``."""
    parts = [str(part) for part in loc]
    if parts and parts[0] in _PARAM_SOURCES:
        source, parts = parts[0], parts[1:]
        if source == "body" and parts and parts[0] == BODY_PARAM:
            parts = parts[1:]
        if not parts:
            return source
    return ".".join(parts)


def _schema_error(api: "NinjaAPI", request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [(_field_of(e.get("loc", ())), str(e.get("msg", ""))) for e in exc.errors]
    return error_response(api, request, status=422, detail=VALIDATION_FAILED, errors=errors)


def _service_fields_error(
    api: "NinjaAPI", request: HttpRequest, exc: OrderInvalid | RegistrationInvalid
) -> HttpResponse:
    errors = exc.errors.items()
    return error_response(api, request, status=422, detail=VALIDATION_FAILED, errors=errors)


def _cart_error(api: "NinjaAPI", request: HttpRequest, exc: CartError) -> HttpResponse:
    if isinstance(exc, ProductNotFound | ItemNotInCart):
        # The product in the URL does not exist or is not in *this* customer's cart.
        return error_response(api, request, status=404, detail=exc.message)
    errors = [(exc.field, exc.message)]
    return error_response(api, request, status=422, detail=VALIDATION_FAILED, errors=errors)


def _not_found(api: "NinjaAPI", request: HttpRequest, exc: Exception) -> HttpResponse:
    # Deliberately the same answer for "does not exist" and "is somebody else's".
    return error_response(api, request, status=404, detail="Not found.")


def _conflict(api: "NinjaAPI", request: HttpRequest, exc: OrderNotCancellable) -> HttpResponse:
    return error_response(api, request, status=409, detail=str(exc))


def _bad_credentials(api: "NinjaAPI", request: HttpRequest, exc: Exception) -> HttpResponse:
    return error_response(api, request, status=401, detail=str(exc))


def _unauthorized(api: "NinjaAPI", request: HttpRequest, exc: HttpError) -> HttpResponse:
    detail = "Authentication required: send 'Authorization: Bearer <token>' from /api/login."
    response = error_response(api, request, status=401, detail=detail)
    response["WWW-Authenticate"] = "Bearer"
    return response


def _http_error(api: "NinjaAPI", request: HttpRequest, exc: HttpError) -> HttpResponse:
    return error_response(api, request, status=exc.status_code, detail=exc.message)


def install_error_handlers(api: "NinjaAPI") -> None:
    """Map ninja's and the services' exceptions to the uniform error body.

    Handlers are looked up along the exception's MRO, so ``AuthenticationError`` wins over its
    base ``HttpError`` and ``ProductNotFound`` reaches the ``CartError`` handler.
    """
    handlers: list[tuple[type[Exception], Any]] = [
        (ValidationError, _schema_error),
        (OrderInvalid, _service_fields_error),
        (RegistrationInvalid, _service_fields_error),
        (CartError, _cart_error),
        (OrderNotFound, _not_found),
        (Http404, _not_found),
        (OrderNotCancellable, _conflict),
        (InvalidCredentials, _bad_credentials),
        (AuthenticationError, _unauthorized),
        (HttpError, _http_error),
    ]
    for exc_class, render in handlers:
        api.add_exception_handler(exc_class, partial(render, api))


# A database id as the API accepts it: bigger numbers would overflow PostgreSQL's bigint and
# turn a client's typo into a 500.
Id = Annotated[int, Field(ge=1, le=2**63 - 1)]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("null_character", "Null characters are not allowed.")
    return value


# Every string a client sends: PostgreSQL text cannot hold NUL, so refuse it as bad input here
# instead of failing in the database with a 500.
Text = Annotated[str, AfterValidator(_no_nul)]
