"""Card rules at checkout: Luhn, brand, length, expiry, CVV, and tokenization."""

from datetime import date

import pytest

from apps.orders.cards import (
    DECLINE_TEST_CARD,
    DECLINE_TOKEN_PREFIX,
    TOKEN_PREFIX,
    CardInvalid,
    card_brand,
    card_validate,
    luhn_valid,
)

TODAY = date(2030, 5, 31)


def with_check_digit(prefix: str) -> str:
    """``prefix`` plus the digit that makes it pass Luhn."""
    return next(prefix + d for d in "0123456789" if luhn_valid(prefix + d))


def validate(**fields):
    card = {"number": "4222222222222", "exp_month": 12, "exp_year": 2031, "cvv": "123"}
    card.update(fields)
    return card_validate(**card, today=TODAY)


def errors_of(**fields) -> dict[str, str]:
    with pytest.raises(CardInvalid) as excinfo:
        validate(**fields)
    return excinfo.value.errors


@pytest.mark.parametrize(
    "number", ["4222222222222", "4111111111111111", "378282246310005", "6011111111111117"]
)
def test_known_test_numbers_pass_luhn(number):
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["4222222222223", "4111111111111112", "1234567812345678"])
def test_a_wrong_digit_fails_luhn(number):
    assert not luhn_valid(number)


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4111111111111111", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("371449635398431", "amex"),
        ("6011111111111117", "discover"),
        ("9111111111111111", None),
    ],
)
def test_brand_is_read_from_the_prefix(number, brand):
    assert card_brand(number) == brand


def test_a_valid_card_keeps_only_brand_last4_expiry_and_a_token():
    # given / when
    card = validate(number="4222 2222 2222 2", exp_month=5, exp_year=2030)

    # then
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("visa", "2222", 5, 2030)
    assert card.token.startswith(TOKEN_PREFIX)
    assert not card.token.startswith(DECLINE_TOKEN_PREFIX)
    assert "4222222222222" not in card.token
    assert not hasattr(card, "number") and not hasattr(card, "cvv")


def test_dashes_and_spaces_in_the_number_are_ignored():
    assert validate(number="4111-1111-1111-1111").last4 == "1111"


@pytest.mark.parametrize("length", [13, 16, 19])
def test_lengths_13_to_19_are_accepted(length):
    number = with_check_digit("4" + "1" * (length - 2))
    assert validate(number=number).brand == "visa"


@pytest.mark.parametrize("length", [12, 20])
def test_lengths_outside_13_to_19_are_refused(length):
    number = with_check_digit("4" + "1" * (length - 2))
    assert errors_of(number=number)["number"] == "Card number must have 13 to 19 digits."


def test_a_luhn_failure_is_refused():
    assert "not valid" in errors_of(number="4222222222223")["number"]


def test_an_unknown_brand_is_refused():
    assert "brand" in errors_of(number=with_check_digit("9" + "1" * 14))["number"]


@pytest.mark.parametrize("number", ["", "4111x11111111111", "abcd"])
def test_non_digits_are_refused(number):
    assert "number" in errors_of(number=number)


def test_a_card_is_valid_through_the_end_of_its_expiry_month():
    # given today is the last day of May 2030, when: the card expires 05/2030
    card = validate(exp_month=5, exp_year=2030)
    # then it is still accepted
    assert card.exp_year == 2030


def test_a_card_that_expired_last_month_is_refused():
    assert errors_of(exp_month=4, exp_year=2030) == {"exp_year": "This card has expired."}


def test_a_card_that_expired_last_year_is_refused():
    assert errors_of(exp_month=12, exp_year=2029) == {"exp_year": "This card has expired."}


def test_a_two_digit_year_means_20xx():
    assert validate(exp_month=1, exp_year=31).exp_year == 2031


def test_any_future_expiry_is_accepted():
    assert validate(exp_year=2099).exp_year == 2099


@pytest.mark.parametrize("year", [10_000, 10**30])
def test_a_year_of_more_than_4_digits_is_refused(year):
    assert errors_of(exp_year=year) == {"exp_year": "Expiry year must have 2 or 4 digits."}


@pytest.mark.parametrize("month", [0, 13, -1])
def test_month_must_be_1_to_12(month):
    assert errors_of(exp_month=month) == {"exp_month": "Expiry month must be between 1 and 12."}


@pytest.mark.parametrize("month", [1, 12])
def test_months_1_and_12_are_accepted(month):
    assert validate(exp_month=month, exp_year=2031).exp_month == month


def test_amex_needs_a_4_digit_cvv():
    assert validate(number="378282246310005", cvv="1234").brand == "amex"
    assert errors_of(number="378282246310005", cvv="123") == {
        "cvv": "Security code must be 4 digits."
    }


@pytest.mark.parametrize("cvv", ["1234", "12", "", "12a"])
def test_visa_needs_a_3_digit_cvv(cvv):
    assert errors_of(cvv=cvv) == {"cvv": "Security code must be 3 digits."}


def test_every_bad_field_is_reported_at_once():
    errors = errors_of(number="4222222222223", exp_month=13, cvv="1")
    assert set(errors) == {"number", "exp_month", "cvv"}


def test_the_decline_test_card_passes_but_gets_a_decline_token():
    # given / when
    card = validate(number=DECLINE_TEST_CARD)
    # then
    assert card.token.startswith(DECLINE_TOKEN_PREFIX)
    assert card.last4 == "0002"


def test_tokens_are_unique_per_checkout():
    assert validate().token != validate().token
