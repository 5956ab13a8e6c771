"""Shipping never dispatches a cancelled order, whichever of the authorization and the
cancellation it receives first (they come from different producers, in no particular order)."""

import logging
import threading
import uuid

import pytest
from django.db import connections, transaction

from consumers.shipping.handlers import service
from consumers.shipping.models import CancelledOrder, Shipment
from consumers.shipping.services import ORDER_LOCK_NAMESPACE, cancellation_record, shipment_dispatch
from outbox.consumer.models import InboxEntry
from outbox.consumer.testing import handle, received_event
from outbox.models import OutboxMessage
from outbox.tests.helpers import wait_for

DATABASES = ["default", "shipping"]
pytestmark = pytest.mark.django_db(databases=DATABASES)

ORDER_ID = 41


def authorized(order_id: int = ORDER_ID):
    """``payments.payment.authorized`` as payments publishes it."""
    return received_event(
        "payments.payment.authorized",
        {
            "order_id": order_id,
            "amount": "135.00",
            "currency": "USD",
            "customer_email": "walter@example.com",
            "transaction_id": str(uuid.uuid4()),
            "card_brand": "visa",
            "card_last4": "2222",
            "delivery": "express",
            "address": {"name": "Walter", "city": "Albuquerque"},
        },
        source="fitness.payments",
    )


def cancelled(order_id: int = ORDER_ID):
    """``orders.order.cancelled`` as the monolith publishes it (after the payment was taken)."""
    return received_event(
        "orders.order.cancelled",
        {
            "order_id": order_id,
            "customer": {"id": 7, "email": "walter@example.com", "name": "Walter"},
            "previous_status": "paid",
            "reason": "Cancelled by the customer.",
            "total": "135.00",
            "lines": [
                {
                    "product_id": 1,
                    "sku": "MAT",
                    "name": "Yoga mat",
                    "unit_price": "135.00",
                    "quantity": 1,
                }
            ],
            "cancelled_at": "2026-11-27T03:00:00+00:00",
        },
        source="fitness.monolith",
    )


def _dispatched_events(order_id: int = ORDER_ID) -> int:
    return (
        OutboxMessage.objects.using("shipping")
        .filter(type="shipping.shipment.dispatched", aggregate_id=str(order_id))
        .count()
    )


def test_a_paid_order_is_dispatched():
    handle(service, authorized())
    assert Shipment.objects.get(order_id=ORDER_ID).carrier == "UPS"
    assert _dispatched_events() == 1


def test_a_cancellation_before_the_authorization_means_no_shipment():
    # given the cancellation arrived first
    handle(service, cancelled())
    # when the order's authorization arrives
    handle(service, authorized())
    # then nothing is dispatched; the authorization was handled (not retried) all the same
    assert not Shipment.objects.filter(order_id=ORDER_ID).exists()
    assert _dispatched_events() == 0
    marker = CancelledOrder.objects.get(order_id=ORDER_ID)
    assert (marker.reason, marker.parcel_already_dispatched) == (
        "Cancelled by the customer.",
        False,
    )
    handled = InboxEntry.objects.using("shipping").filter(service="shipping", subject=str(ORDER_ID))
    assert sorted(handled.values_list("event_type", flat=True)) == [
        "orders.order.cancelled",
        "payments.payment.authorized",
    ]


def test_a_cancellation_after_the_dispatch_flags_the_parcel_for_an_operator(caplog):
    # given the parcel already left
    handle(service, authorized())
    # when the cancellation arrives
    with caplog.at_level(logging.WARNING, logger="consumers.shipping.services"):
        handle(service, cancelled())
    # then the shipment stays (one dispatch), and the order is flagged and logged for an operator
    assert Shipment.objects.filter(order_id=ORDER_ID).count() == 1
    assert _dispatched_events() == 1
    assert CancelledOrder.objects.get(order_id=ORDER_ID).parcel_already_dispatched is True
    assert f"order {ORDER_ID} was cancelled after its parcel was dispatched" in caplog.text


def test_a_redelivered_cancellation_or_authorization_changes_nothing():
    first, again = cancelled(), authorized()
    assert handle(service, first, again) == [True, True]
    # when both are delivered once more (same event ids)
    assert handle(service, first, again) == [False, False]
    # then there is still one marker and no shipment
    assert CancelledOrder.objects.filter(order_id=ORDER_ID).count() == 1
    assert not Shipment.objects.filter(order_id=ORDER_ID).exists()


def test_other_orders_still_ship():
    handle(service, cancelled(order_id=1), authorized(order_id=2))
    assert list(Shipment.objects.values_list("order_id", flat=True)) == [2]


def _waiting_for_shipping_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = %s",
            [ORDER_LOCK_NAMESPACE],
        )
        return cursor.fetchone() is not None


@pytest.mark.django_db(databases=DATABASES, transaction=True)
def test_a_dispatch_waits_for_a_cancellation_being_committed_by_another_worker():
    # given a worker inside the cancellation's transaction, not committed yet
    recorded, commit = threading.Event(), threading.Event()

    def cancel_in_another_worker() -> None:
        try:
            with transaction.atomic(using="shipping"):
                cancellation_record(order_id=ORDER_ID, reason="Changed my mind.")
                recorded.set()
                commit.wait(30)
        finally:
            connections.close_all()

    canceller = threading.Thread(target=cancel_in_another_worker)
    canceller.start()
    assert recorded.wait(30)
    # when a second worker handles the authorization meanwhile
    results: list[Shipment | None] = []

    def dispatch_in_a_second_worker() -> None:
        try:
            with transaction.atomic(using="shipping"):
                payment = authorized().payload
                results.append(
                    shipment_dispatch(payment=payment, correlation_id="c", causation_id="")
                )
        finally:
            connections.close_all()

    dispatcher = threading.Thread(target=dispatch_in_a_second_worker)
    dispatcher.start()
    # then it waits for the cancellation's commit, sees it, and dispatches nothing
    wait_for(_waiting_for_shipping_lock, 15, "the dispatch to wait for the order's lock")
    commit.set()
    canceller.join(30)
    dispatcher.join(30)
    assert results == [None]
    assert not Shipment.objects.filter(order_id=ORDER_ID).exists()
