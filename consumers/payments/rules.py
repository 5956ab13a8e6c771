"""ACME's charge rules, applied when the payment is taken (not at checkout).

The card was already checked at checkout (Luhn, length, CVV); here the service decides with
what it has: the expiry *at charge time* and the issuer's answer, simulated by the token — like a
payment provider's test mode, a token issued for the decline test card is always refused.
"""

from dataclasses import dataclass
from datetime import date

DECLINE_TOKEN_PREFIX = "tok_declined_"


@dataclass(frozen=True)
class ChargeDecision:
    """The issuer's answer: approved, or declined with a machine reason and a human message."""

    approved: bool
    reason: str = ""
    message: str = ""


def charge_decide(*, token: str, exp_month: int, exp_year: int, today: date) -> ChargeDecision:
    """Approve unless the card has expired by ``today`` or the issuer refuses the token."""
    if (exp_year, exp_month) < (today.year, today.month):
        return ChargeDecision(False, "card_expired", "The card expired before it could be charged.")
    if token.startswith(DECLINE_TOKEN_PREFIX):
        return ChargeDecision(False, "card_declined", "The card issuer declined the charge.")
    return ChargeDecision(True)
