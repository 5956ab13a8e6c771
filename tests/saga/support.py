"""Helpers of the saga tests: place an order through the real checkout, wait for its status."""

from decimal import Decimal
from pathlib import Path

from apps.orders.models import Order
from outbox.tests.helpers import wait_for
from tests.factories import make_customer, make_product, place_order_for


def place_order(card: dict, *, quantity: int = 2) -> Order:
    """A new customer checks out ``quantity`` of a new product (62.50 each) with ``card``."""
    product = make_product(price=Decimal("62.50"), stock=10)
    return place_order_for(make_customer(), product, quantity=quantity, card=card)


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
