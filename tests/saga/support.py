"""Helpers of the saga tests: place an order through the real checkout, wait for its status."""

from decimal import Decimal
from pathlib import Path

from apps.carts.services import cart_add_item
from apps.orders.models import Order
from apps.orders.services import CardInput, ShippingAddress, order_place
from outbox.tests.helpers import wait_for
from tests.factories import ADDRESS, make_customer, make_product


def place_order(card: dict, *, quantity: int = 2) -> Order:
    """A new customer checks out ``quantity`` of a new product (62.50 each) with ``card``."""
    customer = make_customer()
    product = make_product(price=Decimal("62.50"), stock=10)
    cart_add_item(customer=customer, product_id=product.pk, quantity=quantity)
    return order_place(
        customer=customer,
        address=ShippingAddress(**ADDRESS),
        delivery="standard",
        card=CardInput(**card),
    )


def order_status(order: Order) -> str:
    """The order's status as committed now."""
    return Order.objects.get(pk=order.pk).status


def wait_status(order: Order, status: str, timeout: float = 30.0) -> None:
    """Wait until the saga moved the order to ``status``."""
    wait_for(lambda: order_status(order) == status, timeout, f"order {order.pk} to be {status}")


def timeline(order: Order) -> list[str]:
    """The kinds of the order's timeline entries, oldest first."""
    return list(Order.objects.get(pk=order.pk).timeline.values_list("kind", flat=True))


def mails(mail_dir: Path) -> str:
    """Every e-mail the notifications worker wrote, as one text."""
    return "\n".join(path.read_text() for path in mail_dir.iterdir())
