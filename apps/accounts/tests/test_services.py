"""Registration and API tokens."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from apps.accounts.models import ApiToken
from apps.accounts.services import (
    InvalidCredentials,
    RegistrationInvalid,
    api_token_authenticate,
    api_token_issue,
    user_register,
)
from tests.factories import TEST_PASSWORD, make_customer

pytestmark = pytest.mark.django_db

STRONG = "tread-lightly-42"


def registration_errors(**fields) -> dict[str, str]:
    data = {"username": "jesse", "email": "jesse@example.com", "password": STRONG}
    data.update(fields)
    with pytest.raises(RegistrationInvalid) as excinfo:
        user_register(**data)
    return excinfo.value.errors


def test_register_creates_a_customer_with_a_hashed_password():
    # when
    customer = user_register(username=" jesse ", email="Jesse@Example.com", password=STRONG)

    # then
    assert (customer.username, customer.email) == ("jesse", "jesse@example.com")
    assert customer.check_password(STRONG)
    assert customer.password != STRONG
    assert not customer.is_staff


def test_a_taken_username_is_refused_whatever_its_case():
    # given
    make_customer(username="Heisenberg")

    # when / then
    assert registration_errors(username="heisenberg") == {"username": "This username is taken."}
    assert get_user_model().objects.filter(username__iexact="heisenberg").count() == 1


@pytest.mark.parametrize("password", ["short", "password123", "12345678901", "jesse1234"])
def test_weak_passwords_are_refused(password):
    assert "password" in registration_errors(password=password)


def test_every_bad_field_is_reported_and_nothing_is_created():
    # when
    errors = registration_errors(username="bad name!", email="not-an-email", password="x")

    # then
    assert set(errors) == {"username", "email", "password"}
    assert not get_user_model().objects.filter(email="not-an-email").exists()


def test_an_email_longer_than_its_column_is_refused():
    email = "a" * 250 + "@example.com"
    assert registration_errors(email=email) == {"email": "Use at most 254 characters."}


def test_a_blank_username_is_refused():
    assert registration_errors(username="   ") == {"username": "Choose a username."}


def test_issuing_a_token_stores_only_its_hash():
    # given
    customer = make_customer()

    # when
    token, record = api_token_issue(username=customer.username, password=TEST_PASSWORD)

    # then
    assert len(token) >= 40
    assert record.customer == customer
    assert token not in record.key_hash
    assert not ApiToken.objects.filter(key_hash=token).exists()
    assert record.expires_at > timezone.now() + timedelta(days=1)


def test_a_wrong_password_issues_no_token():
    customer = make_customer()
    with pytest.raises(InvalidCredentials):
        api_token_issue(username=customer.username, password="wrong-password")
    assert not ApiToken.objects.exists()


def test_an_unknown_user_issues_no_token():
    with pytest.raises(InvalidCredentials):
        api_token_issue(username="nobody", password=TEST_PASSWORD)


def test_an_inactive_customer_gets_no_token():
    customer = make_customer(is_active=False)
    with pytest.raises(InvalidCredentials):
        api_token_issue(username=customer.username, password=TEST_PASSWORD)


def test_a_token_authenticates_its_customer_and_notes_its_use():
    # given
    customer = make_customer()
    token, record = api_token_issue(username=customer.username, password=TEST_PASSWORD)

    # when
    authenticated = api_token_authenticate(token=token)

    # then
    assert authenticated == customer
    record.refresh_from_db()
    assert record.last_used_at is not None


@pytest.mark.parametrize("token", ["", "not-a-token"])
def test_an_unknown_token_authenticates_nobody(token):
    assert api_token_authenticate(token=token) is None


def test_an_expired_token_authenticates_nobody():
    # given
    customer = make_customer()
    token, record = api_token_issue(username=customer.username, password=TEST_PASSWORD)
    ApiToken.objects.filter(pk=record.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    # when / then
    assert api_token_authenticate(token=token) is None


def test_a_deactivated_customers_token_authenticates_nobody():
    # given
    customer = make_customer()
    token, _ = api_token_issue(username=customer.username, password=TEST_PASSWORD)
    get_user_model().objects.filter(pk=customer.pk).update(is_active=False)

    # when / then
    assert api_token_authenticate(token=token) is None
