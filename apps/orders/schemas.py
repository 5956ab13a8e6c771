"""Request and response bodies of the orders API.

The card is accepted in ``CardIn`` and handed straight to the service, which keeps only brand,
last four digits, expiry and a token: no response schema has a field for the number or the CVV.
"""

from datetime import datetime

from ninja import Schema
from pydantic import Field

from apps.orders.models import DeliveryMethod, Order, OrderLine, OrderTimelineEntry
from fitness.api_common import Money


class AddressIn(Schema):
    name: str
    street: str
    city: str
    zip: str
    country: str = Field(description="ISO 3166-1 alpha-2 code, e.g. US or DE.")


class CardIn(Schema):
    number: str = Field(description="13 to 19 digits (spaces allowed), Luhn-valid.")
    exp_month: int = Field(description="1 to 12.")
    exp_year: int = Field(description="Four digits (two are read as 20xx).")
    cvv: str = Field(description="4 digits for American Express, 3 for other brands.")


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
    kind: str
    status: str
    message: str
    source: str


class OrderOut(Schema):
    id: int
    status: str
    subtotal: Money
    delivery_cost: Money
    total: Money
    currency: str
    delivery: str
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
