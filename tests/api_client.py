"""A thin JSON client for API tests: Django's test client plus an optional bearer token."""

import json
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.test import Client

from apps.accounts.services import api_token_issue
from tests.factories import TEST_PASSWORD


class ApiClient:
    """Sends JSON to /api/..., with ``Authorization: Bearer <token>`` once a token is set."""

    def __init__(self, client: Client, token: str | None = None) -> None:
        self.client = client
        self.token = token

    def login_as(self, customer: AbstractBaseUser) -> "ApiClient":
        """Use a fresh token of ``customer`` (made by the service, not through /api/login)."""
        self.token, _ = api_token_issue(username=customer.get_username(), password=TEST_PASSWORD)
        return self

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(f"/api{path}", params, headers=self._headers())

    def post(self, path: str, body: Any = None) -> Any:
        return self._send("post", path, body)

    def patch(self, path: str, body: Any = None) -> Any:
        return self._send("patch", path, body)

    def delete(self, path: str) -> Any:
        return self.client.delete(f"/api{path}", headers=self._headers())

    def _send(self, method: str, path: str, body: Any) -> Any:
        data = "" if body is None else json.dumps(body)
        send = getattr(self.client, method)
        return send(f"/api{path}", data, content_type="application/json", headers=self._headers())


def error_fields(response: Any) -> dict[str, str]:
    """``{field: message}`` of a uniform error body."""
    return {error["field"]: error["message"] for error in response.json()["errors"]}
