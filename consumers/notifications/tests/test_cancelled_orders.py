"""A customer told that their order was cancelled is not told afterwards that it ships or that
its payment was received."""

import dataclasses
import uuid

import pytest
from django.core import mail

from consumers.notifications.handlers import service
from consumers.notifications.messages import message_for
from consumers.notifications.models import Notification
from outbox.consumer.events import ReceivedEvent
from outbox.consumer.testing import handle, handle_concurrently, received_event

pytestmark = pytest.mark.django_db(databases=["default", "notifications"])

ORDER_ID = 52
EMAIL = "dwight@example.com"


def cancelled():
    customer = {"id": 3, "email": EMAIL, "name": "Dwight"}
    payload = {"order_id": ORDER_ID, "customer": customer, "previous_status": "paid"}
    payload |= {"reason": "Changed my mind.", "total": "20.00", "lines": []}
    return received_event(
        "orders.order.cancelled", {**payload, "cancelled_at": "2026-11-27T03:00:00+00:00"}
    )


def shipping_step(step: str):
    """``shipping.shipment.dispatched`` or ``...delivered`` of the order."""
    parcel = {"order_id": ORDER_ID, "tracking_number": str(uuid.uuid4()), "carrier": "USPS"}
    at = {f"{step}_at": "2026-11-27T03:00:01+00:00"}
    return received_event(f"shipping.shipment.{step}", {**parcel, "customer_email": EMAIL, **at})


def payment_step(step: str, sequence: int = 1, **extra: str):
    """``payments.payment.authorized`` (with ``extra``: its card) or ``...refunded`` of the
    order, as payments publishes it."""
    payload = {"order_id": ORDER_ID, "amount": "20.00", "currency": "USD"}
    payload |= {"transaction_id": str(uuid.uuid4()), **extra}
    event_type = f"payments.payment.{step}"
    return received_event(event_type, payload, source="fitness.payments", sequence=sequence)


def authorized():
    """``payments.payment.authorized`` of the order (it carries the customer's address)."""
    card = {"card_brand": "visa", "card_last4": "4242", "customer_email": EMAIL}
    return payment_step("authorized", 1, **card)


def _kinds() -> list[str]:
    return list(Notification.objects.order_by("id").values_list("kind", flat=True))


def test_no_shipping_mail_after_the_cancellation_mail():
    # given the customer was told the order is cancelled
    handle(service, cancelled())
    # when shipping reports a parcel that had left before the cancellation reached it
    handle(service, shipping_step("dispatched"), shipping_step("delivered"))
    # then no "on its way" or "delivered" mail follows
    assert _kinds() == ["orders.order.cancelled"]
    assert [message.subject for message in mail.outbox] == [f"Order #{ORDER_ID} was cancelled"]


def test_a_shipping_mail_sent_before_the_cancellation_stays_sent():
    handle(service, shipping_step("dispatched"), cancelled())
    assert _kinds() == ["shipping.shipment.dispatched", "orders.order.cancelled"]
    assert len(mail.outbox) == 2


def _from_its_producer(event: ReceivedEvent) -> ReceivedEvent:
    """The event with the source it has in production (the monolith's cancellation, payments'
    and shipping's events): the framework's per-aggregate lock, per producer, then does not
    order the two, as between two real workers."""
    producer = event.type.split(".")[0]
    source = "fitness.monolith" if producer == "orders" else f"fitness.{producer}"
    return dataclasses.replace(event, source=source)


@pytest.mark.django_db(databases=["default", "notifications"], transaction=True)
@pytest.mark.parametrize(
    ("first", "second", "mailed"),
    [
        ("cancellation", "shipping", ["cancellation"]),
        ("shipping", "cancellation", ["shipping", "cancellation"]),
        ("cancellation", "payment", ["cancellation"]),
        ("payment", "cancellation", ["payment", "cancellation"]),
    ],
)
def test_a_cancellation_and_a_shipping_or_payment_mail_handled_at_once_do_not_interleave(
    first: str, second: str, mailed: list[str]
) -> None:
    events = {"cancellation": cancelled(), "shipping": shipping_step("dispatched")}
    events["payment"] = authorized()
    events = {name: _from_its_producer(event) for name, event in events.items()}
    # given a worker that sent the first mail of an order and has not committed yet
    # when a second worker handles the order's other mail meanwhile
    waited = handle_concurrently(service, events[first], events[second])
    # then it waits for the first one's commit, and decides only then: no shipping or payment
    # mail after the cancellation mail, no cancellation mail while another one is being sent
    assert waited, f"{second} handled before the {first} committed"
    assert _kinds() == [events[name].type for name in mailed]
    expected = [message_for(events[name].type, events[name].payload)[0] for name in mailed]
    assert [message.subject for message in mail.outbox] == expected
