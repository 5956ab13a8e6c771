"""A customer told that their order was cancelled is not told afterwards that it ships."""

import dataclasses
import threading
import uuid

import pytest
from django.core import mail
from django.db import connections, transaction

from consumers.notifications.handlers import service
from consumers.notifications.messages import message_for
from consumers.notifications.models import Notification
from consumers.notifications.services import DATABASE
from outbox.consumer.events import ReceivedEvent
from outbox.consumer.testing import handle, received_event
from outbox.tests.helpers import wait_for

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


class Worker(threading.Thread):
    """A notifications worker handling one event in a transaction of its own, on a connection of
    its own; it keeps the transaction open after the handler until ``commit`` is set."""

    def __init__(self, event: ReceivedEvent, *, hold: bool = False) -> None:
        super().__init__(name=f"worker-{event.type}")
        self.event = event
        self.connected, self.handled, self.commit = (threading.Event() for _ in range(3))
        if not hold:
            self.commit.set()
        self.backend_pid = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            connections[DATABASE].ensure_connection()
            self.backend_pid = connections[DATABASE].connection.info.backend_pid
            self.connected.set()
            with transaction.atomic(using=DATABASE):
                handle(service, self.event)
                self.handled.set()
                self.commit.wait(30)
        except BaseException as exc:  # shown by the test
            self.error = exc
        finally:
            connections.close_all()


def _waiting_for_a_lock(pid: int) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", [pid])
        return cursor.fetchone() is not None


def _from_its_producer(event: ReceivedEvent) -> ReceivedEvent:
    """The event with the source it has in production (the monolith's cancellation,
    shipping's shipment events): the framework's per-aggregate lock, per producer, then does
    not order the two, as between two real workers."""
    source = "fitness.monolith" if event.type.startswith("orders.") else "fitness.shipping"
    return dataclasses.replace(event, source=source)


@pytest.mark.django_db(databases=["default", "notifications"], transaction=True)
@pytest.mark.parametrize(
    ("first", "second", "mailed"),
    [
        ("cancellation", "shipping", ["cancellation"]),
        ("shipping", "cancellation", ["shipping", "cancellation"]),
    ],
)
def test_a_cancellation_and_a_shipping_mail_handled_at_once_do_not_interleave(
    first: str, second: str, mailed: list[str]
) -> None:
    events = {"cancellation": cancelled(), "shipping": shipping_step("dispatched")}
    events = {name: _from_its_producer(event) for name, event in events.items()}
    # given a worker that sent the first mail of an order and has not committed yet
    holding = Worker(events[first], hold=True)
    holding.start()
    assert holding.handled.wait(30), holding.error
    other = Worker(events[second])
    try:
        # when a second worker handles the order's other mail meanwhile
        other.start()
        assert other.connected.wait(30), other.error
        wait_for(
            lambda: _waiting_for_a_lock(other.backend_pid) or not other.is_alive(),
            15,
            "the second worker to wait for a lock or to finish",
        )
        # then it waits for the first one's commit, and decides only then: no shipping mail
        # after the cancellation mail, no cancellation mail while a shipping mail is being sent
        assert not other.handled.is_set(), f"{second} handled before the {first} committed"
    finally:
        holding.commit.set()
        holding.join(30)
        if other.ident is not None:  # started
            other.join(30)
    assert (holding.error, other.error) == (None, None)
    assert _kinds() == [events[name].type for name in mailed]
    expected = [message_for(events[name].type, events[name].payload)[0] for name in mailed]
    assert [message.subject for message in mail.outbox] == expected
