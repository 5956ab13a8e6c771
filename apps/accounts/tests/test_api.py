"""Accounts over the JSON API: register, log in, and what a bearer token opens."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from apps.accounts.models import ApiToken
from tests.api_client import ApiClient, error_fields
from tests.factories import TEST_PASSWORD, make_customer

pytestmark = pytest.mark.django_db

STRONG = "tread-lightly-42"


@pytest.fixture
def api(client):
    return ApiClient(client)


def test_register_returns_the_new_customer_without_the_password(api):
    # when
    response = api.post(
        "/register", {"username": "jesse", "email": "jesse@example.com", "password": STRONG}
    )

    # then
    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "username": "jesse", "email": "jesse@example.com"}
    assert get_user_model().objects.get(pk=body["id"]).check_password(STRONG)


def test_a_duplicate_username_is_a_422_on_username_and_creates_nothing(api):
    # given
    make_customer(username="jesse")
    users = get_user_model().objects.count()

    # when
    response = api.post(
        "/register", {"username": "Jesse", "email": "other@example.com", "password": STRONG}
    )

    # then
    assert response.status_code == 422
    assert response.json()["detail"] == "Validation failed"
    assert error_fields(response) == {"username": "This username is taken."}
    assert get_user_model().objects.count() == users


def test_a_weak_password_is_a_422_on_password(api):
    response = api.post(
        "/register", {"username": "jesse", "email": "jesse@example.com", "password": "123"}
    )
    assert response.status_code == 422
    assert set(error_fields(response)) == {"password"}
    assert not get_user_model().objects.filter(username="jesse").exists()


def test_an_overlong_email_is_a_422_not_a_server_error(api):
    response = api.post(
        "/register",
        {"username": "jesse", "email": "a" * 250 + "@example.com", "password": STRONG},
    )
    assert response.status_code == 422
    assert list(error_fields(response)) == ["email"]


def test_a_null_character_is_a_422_not_a_database_error(api):
    response = api.post("/login", {"username": "walt\x00", "password": "x"})
    assert response.status_code == 422
    assert error_fields(response) == {"username": "Null characters are not allowed."}


def test_a_missing_field_uses_the_same_error_body(api):
    # when: schema validation by ninja, not the service
    response = api.post("/register", {"username": "jesse", "password": STRONG})

    # then
    assert response.status_code == 422
    assert response.json()["detail"] == "Validation failed"
    assert error_fields(response) == {"email": "Field required"}


def test_a_body_that_is_not_json_is_a_400_with_the_same_error_body(client):
    response = client.post("/api/register", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": "Cannot parse request body", "errors": []}


def test_login_returns_a_bearer_token_that_opens_the_cart(api):
    # given
    customer = make_customer()

    # when
    response = api.post("/login", {"username": customer.username, "password": TEST_PASSWORD})

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_at"]
    api.token = body["access_token"]
    assert api.get("/cart").status_code == 200


@pytest.mark.parametrize(
    "credentials",
    [{"password": "wrong-password"}, {"username": "nobody"}],
    ids=["wrong password", "unknown user"],
)
def test_bad_credentials_are_a_401_that_does_not_say_which_part_is_wrong(api, credentials):
    # given
    customer = make_customer()
    body = {"username": customer.username, "password": TEST_PASSWORD, **credentials}

    # when
    response = api.post("/login", body)

    # then
    assert response.status_code == 401
    assert response.json() == {"detail": "Wrong username or password.", "errors": []}
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize(
    "header",
    ["Bearer not-a-token", "Bearer ", "Token abc", "Basic dXNlcjpwYXNz"],
)
def test_a_bad_authorization_header_is_a_401(client, header):
    response = client.get("/api/cart", headers={"Authorization": header})
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["errors"] == []


def test_an_expired_token_is_a_401(api, customer):
    # given
    api.login_as(customer)
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(minutes=1))

    # when / then
    assert api.get("/cart").status_code == 401
