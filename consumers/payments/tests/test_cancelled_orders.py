"""A cancelled order is never left charged: payments refunds it, or does not charge it at all,
also when two workers handle the order's placed and cancelled events at the same moment."""

import dataclasses

import pytest

from consumers.payments.handlers import service
from consumers.payments.models import CancelledOrder, Payment
from outbox.consumer.events import ReceivedEvent
from outbox.consumer.testing import handle_concurrently, received_event
from outbox.models import OutboxMessage

pytestmark = pytest.mark.django_db(databases=["default", "payments"], transaction=True)

ORDER_ID = 63
CUSTOMER = {"id": 5, "email": "jesse@example.com", "name": "Jesse"}
LINE = {"product_id": 1, "sku": "MAT", "name": "Yoga mat", "unit_price": "20.00", "quantity": 1}


def placed() -> ReceivedEvent:
    """``orders.order.placed`` with a good card."""
    card = {"token": "tok_ok", "brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2099}
    address = {"name": "Jesse", "street": "1 Main St", "city": "C", "zip": "1", "country": "US"}
    payload = {"order_id": ORDER_ID, "customer": CUSTOMER, "lines": [LINE], "subtotal": "20.00"}
    payload |= {"delivery_cost": "0.00", "total": "20.00", "currency": "USD", "address": address}
    payload |= {"delivery": "standard", "payment": card, "placed_at": "2026-11-27T03:00:00+00:00"}
    return received_event("orders.order.placed", payload)


def cancelled() -> ReceivedEvent:
    """``orders.order.cancelled`` of the same order, before its payment was confirmed."""
    payload = {"order_id": ORDER_ID, "customer": CUSTOMER, "previous_status": "pending_payment"}
    payload |= {"reason": "Changed my mind.", "total": "20.00", "lines": [LINE]}
    return received_event(
        "orders.order.cancelled", {**payload, "cancelled_at": "2026-11-27T03:00:01+00:00"}
    )


def _as_imported(event: ReceivedEvent) -> ReceivedEvent:
    """The event as moved over from django-outbox-pattern: an aggregate of its own (subject =
    the event id, sequence 1), so the framework's per-aggregate lock does not order the two."""
    return dataclasses.replace(event, source="fitness.monolith", subject=str(event.id), sequence=1)


def _refunds() -> int:
    refunded = OutboxMessage.objects.using("payments").filter(type="payments.payment.refunded")
    return refunded.filter(aggregate_id=str(ORDER_ID)).count()


@pytest.mark.parametrize("first", ["charge", "cancellation"])
def test_a_charge_and_a_cancellation_handled_at_once_never_leave_the_order_charged(first: str):
    events = {"charge": _as_imported(placed()), "cancellation": _as_imported(cancelled())}
    second = "cancellation" if first == "charge" else "charge"
    # given a worker that handled one of the order's events and has not committed yet
    # when a second worker handles the order's other event meanwhile
    waited = handle_concurrently(service, events[first], events[second])
    # then the order is charged and refunded, or never charged
    assert CancelledOrder.objects.filter(order_id=ORDER_ID).exists()
    payment = Payment.objects.filter(order_id=ORDER_ID).first()
    if first == "charge":
        assert (payment.status, _refunds()) == (Payment.Status.REFUNDED, 1)
    else:
        assert (payment, _refunds()) == (None, 0)
    # because the second worker waited for the first one's commit and decided only then
    assert waited, f"{second} handled before the {first} committed"
