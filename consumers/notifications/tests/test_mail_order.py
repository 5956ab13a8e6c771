"""The customer's mails tell one story: a mail whose news a mail already sent has overtaken
("on its way" after "delivered", "payment received" after "order cancelled"...) is not sent."""

import dataclasses
import logging

import pytest
from django.core import mail

from consumers.notifications.handlers import service
from consumers.notifications.messages import message_for
from consumers.notifications.models import Notification
from consumers.notifications.services import recipient_remember
from outbox.consumer.events import ReceivedEvent
from outbox.consumer.models import InboxEntry
from outbox.consumer.testing import handle

from .test_cancelled_orders import (
    EMAIL,
    ORDER_ID,
    authorized,
    cancelled,
    payment_step,
    shipping_step,
)

pytestmark = pytest.mark.django_db(databases=["default", "notifications"])


def refunded() -> ReceivedEvent:
    return payment_step("refunded", 2)  # no address: notifications knows it from placed


def _shipment(step: str, sequence: int) -> ReceivedEvent:
    """A shipping mail's event with shipping's source and the shipment's sequence."""
    event = shipping_step(step)
    return dataclasses.replace(event, source="fitness.shipping", sequence=sequence)


EVENTS = {
    "authorized": authorized,
    "dispatched": lambda: _shipment("dispatched", 1),
    "delivered": lambda: _shipment("delivered", 2),
    "cancelled": cancelled,
    "refunded": refunded,
}


@pytest.fixture(autouse=True)
def _recipient() -> None:
    """The order's placed event was handled: notifications knows whom to write to."""
    recipient_remember(order_id=ORDER_ID, email=EMAIL, name="Dwight")


def _subjects(*events: ReceivedEvent) -> list[str]:
    return [message_for(event.type, event.payload)[0] for event in events]


def test_no_on_its_way_mail_after_the_delivered_mail():
    # given "delivered" was mailed while "dispatched" waited in the retry queue (SMTP hiccup)
    dispatched, delivered = _shipment("dispatched", 1), _shipment("delivered", 2)
    handle(service, delivered)
    # when "dispatched" comes back from the retry queue
    assert handle(service, dispatched) == [True]
    # then it is handled (recorded in the inbox, not retried) and no "on its way" mail follows
    assert [message.subject for message in mail.outbox] == _subjects(delivered)
    entry = InboxEntry.objects.using("notifications").get(event_id=dispatched.id)
    assert entry.handled_at is not None
    assert handle(service, dispatched) == [False]  # a redelivery is a duplicate
    assert list(Notification.objects.values_list("kind", flat=True)) == [delivered.type]


def test_no_payment_received_mail_after_the_cancellation_mail_the_refund_mail_follows(caplog):
    cancellation, authorization, refund = cancelled(), authorized(), refunded()
    # given the customer was told the order is cancelled
    handle(service, cancellation)
    # when the payment taken before the cancellation reached payments is reported, then refunded
    with caplog.at_level(logging.INFO, logger="consumers.notifications.services"):
        handle(service, authorization, refund)
    # then the customer hears of the refund, not that the order is being packed
    assert [message.subject for message in mail.outbox] == _subjects(cancellation, refund)
    assert f"no {authorization.type} mail for order {ORDER_ID}" in caplog.text


# Each mail, and the mails after which it is not sent any more.
OVERTAKEN = [
    ("authorized", "dispatched"),
    ("authorized", "delivered"),
    ("authorized", "cancelled"),
    ("authorized", "refunded"),
    ("dispatched", "delivered"),
    ("dispatched", "cancelled"),
    ("dispatched", "refunded"),
    ("delivered", "cancelled"),
    ("delivered", "refunded"),
]


@pytest.mark.parametrize(("late", "sent"), OVERTAKEN)
def test_a_mail_is_not_sent_after_a_mail_that_overtook_it(late: str, sent: str):
    first, second = EVENTS[sent](), EVENTS[late]()
    handle(service, first, second)
    assert [message.subject for message in mail.outbox] == _subjects(first)


@pytest.mark.parametrize(("first", "then"), OVERTAKEN)
def test_both_mails_are_sent_in_the_order_of_the_story(first: str, then: str):
    events = EVENTS[first](), EVENTS[then]()
    handle(service, *events)
    assert [message.subject for message in mail.outbox] == _subjects(*events)


@pytest.mark.parametrize(("first", "then"), [("cancelled", "refunded"), ("refunded", "cancelled")])
def test_the_cancellation_and_the_refund_mails_are_both_sent_in_either_order(first, then):
    events = EVENTS[first](), EVENTS[then]()
    handle(service, *events)
    assert [message.subject for message in mail.outbox] == _subjects(*events)
