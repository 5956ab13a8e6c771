"""Request and response bodies of the orders API.

The card is accepted in ``CardIn`` and handed straight to the service, which keeps only brand,
last four digits, expiry and a token: no response schema has a field for the number or the CVV.
"""

from datetime import datetime

from ninja import Schema
from pydantic import Field

from apps.orders.models import DeliveryMethod, Order, OrderLine, OrderStatus, OrderTimelineEntry
from fitness.api_common import Money, Text


def _max_length(field: str) -> int | None:
    return Order._meta.get_field(field).max_length


class AddressIn(Schema):
    # The lengths of the order's columns: longer input is a 422 here, not a database error.
    name: Text = Field(max_length=_max_length("ship_name"))
    street: Text = Field(max_length=_max_length("ship_street"))
    city: Text = Field(max_length=_max_length("ship_city"))
    zip: Text = Field(max_length=_max_length("ship_zip"))
    country: Text = Field(description="ISO 3166-1 alpha-2 code, e.g. US or DE.")


class CardIn(Schema):
    number: Text = Field(description="13 to 19 digits (spaces allowed), Luhn-valid.")
    exp_month: int = Field(description="1 to 12.")
    exp_year: int = Field(description="Four digits (two are read as 20xx).")
    cvv: Text = Field(description="4 digits for American Express, 3 for other brands.")


class OrderIn(Schema):
    address: AddressIn
    delivery: DeliveryMethod = DeliveryMethod.STANDARD
    card: CardIn


class AddressOut(Schema):
    name: str
    street: str
    city: str
    zip: str
    country: str


class PaymentOut(Schema):
    brand: str
    last4: str
    exp_month: int
    exp_year: int


class OrderLineOut(Schema):
    product_id: int
    sku: str
    name: str
    unit_price: Money
    quantity: int
    line_total: Money


class TimelineEntryOut(Schema):
    at: datetime = Field(validation_alias="created_at")
    kind: str = Field(description="The event type behind the entry, e.g. orders.order.placed.")
    status: OrderStatus = Field(description="The order's status after this step.")
    message: str
    source: str = Field(description="The service that reported it (orders, payments...).")


class OrderOut(Schema):
    id: int
    status: OrderStatus
    subtotal: Money
    delivery_cost: Money
    total: Money
    currency: str
    delivery: DeliveryMethod
    address: AddressOut
    payment: PaymentOut
    lines: list[OrderLineOut]
    timeline: list[TimelineEntryOut] = Field(description="What happened so far, oldest first.")
    placed_at: datetime

    @staticmethod
    def resolve_delivery(obj: Order) -> str:
        return obj.delivery_method

    @staticmethod
    def resolve_address(obj: Order) -> AddressOut:
        return AddressOut(
            name=obj.ship_name,
            street=obj.ship_street,
            city=obj.ship_city,
            zip=obj.ship_zip,
            country=obj.ship_country,
        )

    @staticmethod
    def resolve_payment(obj: Order) -> PaymentOut:
        return PaymentOut(
            brand=obj.card_brand,
            last4=obj.card_last4,
            exp_month=obj.card_exp_month,
            exp_year=obj.card_exp_year,
        )

    @staticmethod
    def resolve_lines(obj: Order) -> list[OrderLine]:
        return list(obj.lines.all())

    @staticmethod
    def resolve_timeline(obj: Order) -> list[OrderTimelineEntry]:
        return list(obj.timeline.all())
