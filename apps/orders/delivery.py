"""Delivery methods and what they cost."""

from decimal import Decimal

from apps.orders.models import DeliveryMethod

DELIVERY_COSTS: dict[str, Decimal] = {
    DeliveryMethod.STANDARD: Decimal("5.00"),
    DeliveryMethod.EXPRESS: Decimal("15.00"),
}
FREE_STANDARD_DELIVERY_FROM = Decimal("100.00")


def delivery_cost(*, method: str, subtotal: Decimal) -> Decimal:
    """Price of delivery; standard delivery is free from 100.00 of goods."""
    if method == DeliveryMethod.STANDARD and subtotal >= FREE_STANDARD_DELIVERY_FROM:
        return Decimal("0.00")
    return DELIVERY_COSTS[method]
