"""The checkout form. It parses what the customer typed; ``order_place`` validates the rules
(Luhn, expiry, CVV length, address) and its errors are put back next to the matching field."""

from decimal import Decimal
from typing import Any

from django import forms

from apps.orders.delivery import delivery_cost
from apps.orders.models import DeliveryMethod


class NoEchoTextInput(forms.TextInput):
    """A text input that never writes its value back into the page.

    Used for the card number and the CVV: after an error the customer types them again, and
    they never travel back to the browser in a response (PCI DSS).
    """

    def format_value(self, value: Any) -> None:
        return None


def _attrs(**attrs: str) -> dict[str, str]:
    return {key.replace("_", "-"): value for key, value in attrs.items()}


class CheckoutForm(forms.Form):
    """Shipping address, delivery method and card, as typed at checkout.

    The address, card number and CVV are optional *here* on purpose: ``order_place`` checks
    them all at once, so the customer sees every problem in one go (an empty city next to a
    bad card number) instead of one round-trip per kind of error. Only what must be parsed
    before the service can be called (expiry numbers, delivery choice) is required.
    """

    name = forms.CharField(
        required=False,
        label="Full name",
        max_length=120,
        widget=forms.TextInput(_attrs(autocomplete="name")),
    )
    street = forms.CharField(
        required=False,
        label="Street and number",
        max_length=200,
        widget=forms.TextInput(_attrs(autocomplete="street-address")),
    )
    city = forms.CharField(
        required=False,
        max_length=100,
        widget=forms.TextInput(_attrs(autocomplete="address-level2")),
    )
    zip = forms.CharField(
        required=False,
        label="ZIP / postal code",
        max_length=20,
        widget=forms.TextInput(_attrs(autocomplete="postal-code")),
    )
    country = forms.CharField(
        required=False,
        label="Country code",
        help_text="Two letters, e.g. US, DE or FR.",
        widget=forms.TextInput(_attrs(autocomplete="country", maxlength="2", placeholder="US")),
    )
    delivery = forms.ChoiceField(
        label="Delivery", choices=DeliveryMethod.choices, widget=forms.RadioSelect
    )
    number = forms.CharField(
        required=False,
        label="Card number",
        widget=NoEchoTextInput(
            _attrs(autocomplete="cc-number", inputmode="numeric", placeholder="1234 5678 9012 3456")
        ),
    )
    exp_month = forms.IntegerField(
        label="Expiry month",
        widget=forms.NumberInput(_attrs(autocomplete="cc-exp-month", placeholder="MM")),
        error_messages={"invalid": "Enter the month as a number, 1 to 12."},
    )
    exp_year = forms.IntegerField(
        label="Expiry year",
        widget=forms.NumberInput(_attrs(autocomplete="cc-exp-year", placeholder="YYYY")),
        error_messages={"invalid": "Enter the year as a number, e.g. 2030."},
    )
    cvv = forms.CharField(
        required=False,
        label="CVV",
        help_text="3 digits on the back (4 for Amex).",
        widget=NoEchoTextInput(
            _attrs(autocomplete="cc-csc", inputmode="numeric", maxlength="4", placeholder="123")
        ),
    )

    ADDRESS_FIELDS = ("name", "street", "city", "zip", "country")
    CARD_FIELDS = ("number", "exp_month", "exp_year", "cvv")

    def __init__(self, *args: Any, subtotal: Decimal, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subtotal = subtotal
        self.delivery_costs = {
            method: delivery_cost(method=method, subtotal=subtotal)
            for method in DeliveryMethod.values
        }
        self.fields["delivery"].choices = [
            (method, f"{label} · {_price(self.delivery_costs[method])}")
            for method, label in DeliveryMethod.choices
        ]

    def summary(self) -> dict[str, Decimal]:
        """Subtotal, delivery and total for the delivery method currently chosen (standard
        until the customer picks another), for the order summary next to the form."""
        chosen = self["delivery"].value()
        delivery = self.delivery_costs.get(chosen, self.delivery_costs[DeliveryMethod.STANDARD])
        return {"subtotal": self.subtotal, "delivery": delivery, "total": self.subtotal + delivery}

    def add_service_errors(self, errors: dict[str, str]) -> None:
        """Put the errors of ``OrderInvalid`` next to their fields: ``card.number`` on the card
        number, ``address.city`` on the city; ``cart`` and unknown keys on top of the form."""
        for key, message in errors.items():
            field = key.rsplit(".", 1)[-1]
            self.add_error(field if field in self.fields else None, message)


def _price(amount: Decimal) -> str:
    return "free" if amount == 0 else f"${amount:,.2f}"
