"""Web pages of accounts: register (and be logged in), log in, log out."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.factories import TEST_PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "plank-squat-burpee-42"


def _register(client, **changes):
    data = {
        "username": "newbie",
        "email": "Newbie@Example.com",
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
        **changes,
    }
    return client.post(reverse("accounts:register"), data)


def test_register_page_has_a_csrf_protected_form(client):
    # when
    response = client.get(reverse("accounts:register"))

    # then
    assert response.status_code == 200
    assert "csrfmiddlewaretoken" in response.content.decode()


def test_register_creates_the_customer_and_logs_them_in(client):
    # when
    response = _register(client)

    # then
    assert response.status_code == 302
    assert response["Location"] == reverse("catalog:product_list")
    user = get_user_model().objects.get(username="newbie")
    assert user.email == "newbie@example.com"
    assert client.session["_auth_user_id"] == str(user.pk)
    page = client.get(response["Location"]).content.decode()
    assert "Welcome to ACME Fitness, newbie!" in page
    assert "Log out" in page


def test_register_goes_on_to_a_safe_next(client):
    # when
    response = _register(client, next="/cart/")
    offsite = _register(client, username="other", next="https://evil.example/")

    # then
    assert response["Location"] == "/cart/"
    assert offsite["Location"] == reverse("catalog:product_list")


@pytest.mark.parametrize(
    ("changes", "field", "error"),
    [
        ({"username": "walter"}, "username", "This username is taken."),
        ({"email": "not-an-email"}, "email", "Enter a valid email address."),
        ({"password": "123", "password_confirm": "123"}, "password", "too short"),
        ({"password_confirm": "something-else-99"}, "password_confirm", "passwords differ"),
    ],
)
def test_register_with_bad_input_shows_field_errors(client, customer, changes, field, error):
    # given
    get_user_model().objects.create_user("walter", "walter@example.com", TEST_PASSWORD)
    before = get_user_model().objects.count()

    # when
    response = _register(client, **changes)

    # then
    assert response.status_code == 400
    assert any(error in message for message in response.context["form"].errors[field])
    assert get_user_model().objects.count() == before
    assert "_auth_user_id" not in client.session


def test_login_with_good_credentials_goes_to_next(client, customer):
    # when
    response = client.post(
        reverse("accounts:login"),
        {"username": customer.username, "password": TEST_PASSWORD, "next": "/cart/"},
    )

    # then
    assert response.status_code == 302
    assert response["Location"] == "/cart/"
    assert client.session["_auth_user_id"] == str(customer.pk)


def test_login_with_wrong_password_says_so(client, customer):
    # when
    response = client.post(
        reverse("accounts:login"), {"username": customer.username, "password": "wrong"}
    )

    # then
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_logout_is_a_post_and_logs_out(client, customer):
    # given
    client.force_login(customer)

    # when
    response = client.post(reverse("accounts:logout"), follow=True)

    # then
    assert response.redirect_chain == [(reverse("catalog:product_list"), 302)]
    assert "You are logged out." in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_logout_by_get_is_refused(client, customer):
    # given
    client.force_login(customer)

    # when
    response = client.get(reverse("accounts:logout"))

    # then
    assert response.status_code == 405
    assert client.session["_auth_user_id"] == str(customer.pk)
