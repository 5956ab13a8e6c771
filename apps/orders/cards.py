"""Card checks at checkout and the stand-in for a payment provider's tokenization.

ACME's rules (see the domain notes): number length 13-19, Luhn, a brand known from the number,
CVV of 4 digits for American Express and 3 for the others, month 1-12, and not expired (a card
is valid through the end of its expiry month). Only brand, last four digits, expiry and an opaque
token leave this module: the full number and the CVV are never stored or published (PCI DSS).
"""

import re
import secrets
from dataclasses import dataclass
from datetime import date

# Like a payment provider's test mode (e.g. Stripe's ``tok_chargeDeclined``), this Luhn-valid
# number passes checkout but its token tells the payments service to decline the charge.
DECLINE_TEST_CARD = "4000000000000002"
DECLINE_TOKEN_PREFIX = "tok_declined_"
TOKEN_PREFIX = "tok_"
MAX_EXP_YEAR = 9999

_BRANDS: list[tuple[str, re.Pattern[str]]] = [
    ("amex", re.compile(r"^3[47]")),
    ("visa", re.compile(r"^4")),
    ("mastercard", re.compile(r"^(5[1-5]|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720)")),
    ("discover", re.compile(r"^(6011|65|64[4-9])")),
]


class CardInvalid(Exception):
    """The card was refused; ``errors`` maps each bad field to a reason for the customer."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class PaymentCard:
    """What the shop keeps of a card: never the number or the CVV."""

    brand: str
    last4: str
    exp_month: int
    exp_year: int
    token: str


def luhn_valid(number: str) -> bool:
    """Whether the digits pass the Luhn checksum."""
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def card_brand(number: str) -> str | None:
    """The brand of a card number from its prefix, or ``None`` when unknown."""
    for brand, pattern in _BRANDS:
        if pattern.match(number):
            return brand
    return None


def _number_errors(number: str) -> tuple[str | None, str | None]:
    """Return ``(error, brand)`` for a digits-only number."""
    if not number:
        return "Enter the card number.", None
    if not number.isdigit():
        return "Card number may only contain digits and spaces.", None
    if not 13 <= len(number) <= 19:
        return "Card number must have 13 to 19 digits.", None
    if not luhn_valid(number):
        return "Card number is not valid (check the digits).", None
    brand = card_brand(number)
    if brand is None:
        return "Card brand not recognised (we take Visa, Mastercard, Amex, Discover).", None
    return None, brand


def _expiry_error(exp_month: int, exp_year: int, today: date) -> tuple[str, str] | None:
    if not 1 <= exp_month <= 12:
        return "exp_month", "Expiry month must be between 1 and 12."
    if exp_year < 100:
        exp_year += 2000
    if (exp_year, exp_month) < (today.year, today.month):
        return "exp_year", "This card has expired."
    # No "too far in the future" rule: ACME's rules have none and any future expiry is valid.
    # Four digits at most, though, so the year fits the order's column.
    if exp_year > MAX_EXP_YEAR:
        return "exp_year", "Expiry year must have 2 or 4 digits."
    return None


def card_validate(
    *, number: str, exp_month: int, exp_year: int, cvv: str, today: date | None = None
) -> PaymentCard:
    """Check a card entered at checkout and tokenize it; raise :class:`CardInvalid` otherwise.

    Every bad field is reported at once so the form can show all errors together.
    """
    today = today or date.today()
    digits = re.sub(r"[\s-]", "", number or "")
    errors: dict[str, str] = {}
    number_error, brand = _number_errors(digits)
    if number_error:
        errors["number"] = number_error
    expiry = _expiry_error(exp_month, exp_year, today)
    if expiry:
        errors[expiry[0]] = expiry[1]
    cvv = cvv or ""
    allowed_lengths = {4} if brand == "amex" else {3} if brand else {3, 4}
    if not cvv.isdigit() or len(cvv) not in allowed_lengths:
        expected = " or ".join(str(n) for n in sorted(allowed_lengths))
        errors["cvv"] = f"Security code must be {expected} digits."
    if errors:
        raise CardInvalid(errors)
    return PaymentCard(
        brand=brand or "",
        last4=digits[-4:],
        exp_month=exp_month,
        exp_year=exp_year if exp_year >= 100 else exp_year + 2000,
        token=card_tokenize(digits),
    )


def card_tokenize(number: str) -> str:
    """An opaque token standing for the card at the (simulated) payment provider."""
    prefix = DECLINE_TOKEN_PREFIX if number == DECLINE_TEST_CARD else TOKEN_PREFIX
    return prefix + secrets.token_hex(12)
