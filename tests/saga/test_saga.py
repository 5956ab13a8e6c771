"""End to end: order placed -> paid -> shipped -> delivered, and the compensation paths, with
the real relay, RabbitMQ and one worker process per service."""

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from django.db import transaction
from django.utils import timezone
from psycopg import sql

from apps.catalog.models import Product
from apps.orders.models import OrderStatus
from apps.orders.services import order_cancel
from consumers.notifications.models import Notification
from consumers.payments.events import PAYMENT_AUTHORIZED
from consumers.payments.models import Payment
from consumers.shipping.events import SHIPMENT_DELIVERED, SHIPMENT_DISPATCHED
from consumers.shipping.models import Shipment
from outbox.consumer.models import InboxEntry
from outbox.models import OutboxMessage
from outbox.recording import record_event
from outbox.tests.helpers import BASE_DIR, database_url, unmark_published, wait_for
from tests.factories import DECLINED_CARD, GOOD_CARD
from tests.saga.support import mails, order_status, place_order, timeline, wait_status

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def test_an_order_with_a_good_card_goes_all_the_way_to_delivered(start_saga, mail_dir):
    # given the relay and every service running
    start_saga()
    # when a customer checks out with a good card
    order = place_order(GOOD_CARD)
    # then the order moves by itself to delivered
    wait_status(order, OrderStatus.DELIVERED)
    assert timeline(order) == [
        "orders.order.placed",
        "payments.payment.authorized",
        "shipping.shipment.dispatched",
        "shipping.shipment.delivered",
    ]
    payment = Payment.objects.get(order_id=order.pk)
    assert payment.status == Payment.Status.AUTHORIZED
    assert payment.amount == order.total
    shipment = Shipment.objects.get(order_id=order.pk)
    assert (shipment.status, shipment.carrier) == (Shipment.Status.DELIVERED, "USPS")
    # and the customer got one e-mail per step, written from the events alone
    wait_for(lambda: Notification.objects.filter(order_id=order.pk).count() == 4, 15, "4 mails")
    written = mails(mail_dir)
    assert f"Your ACME Fitness order #{order.pk}" in written
    assert str(shipment.tracking_number) in written
    assert "4222222222222" not in written


def test_a_declined_card_fails_the_order_and_puts_the_stock_back(start_saga):
    # given the relay and every service running
    start_saga()
    # when a customer checks out with the issuer-declined test card
    order = place_order(DECLINED_CARD, quantity=3)
    product_id = order.lines.get().product_id
    assert Product.objects.get(pk=product_id).stock == 7
    # then payment fails, the stock is released and nothing ships
    wait_status(order, OrderStatus.PAYMENT_FAILED)
    assert Product.objects.get(pk=product_id).stock == 10
    assert Payment.objects.get(order_id=order.pk).decline_reason == "card_declined"
    assert not Shipment.objects.filter(order_id=order.pk).exists()


def test_cancelling_a_paid_order_refunds_it(start_saga):
    # given payments and the monolith's handlers running, shipping not (the order stays paid)
    start_saga("payments", "orders")
    order = place_order(GOOD_CARD)
    wait_status(order, OrderStatus.PAID)
    # when the customer cancels it
    order_cancel(customer=order.customer, order_id=order.pk)
    # then the payments service refunds it and the order's timeline says so
    wait_for(
        lambda: Payment.objects.get(order_id=order.pk).status == Payment.Status.REFUNDED,
        20,
        "refund",
    )
    wait_for(
        lambda: order.timeline.filter(kind="payments.payment.refunded").exists(), 20, "timeline"
    )
    assert order_status(order) == OrderStatus.CANCELLED


def test_an_event_published_twice_has_one_effect(start_saga):
    # given an order that went all the way through
    processes = start_saga()
    order = place_order(GOOD_CARD)
    wait_status(order, OrderStatus.DELIVERED)
    # when the relay publishes its placed event again (same message id), as after a crash
    placed = OutboxMessage.objects.get(type="orders.order.placed", aggregate_id=str(order.pk))
    unmark_published(placed.pk)
    # then both subscribers (payments, notifications) receive it and ignore it as a duplicate
    subscribers = [p for p in processes if p.name in {"payments", "notifications"}]
    for process in subscribers:
        wait_for(lambda p=process: "duplicate ignored" in p.log, 20, f"{process.name} duplicate")
    # and there is still one payment, one shipment, one mail per step
    assert Payment.objects.filter(order_id=order.pk).count() == 1
    assert Shipment.objects.filter(order_id=order.pk).count() == 1
    assert Notification.objects.filter(order_id=order.pk, kind=placed.type).count() == 1
    assert InboxEntry.objects.filter(event_id=placed.event_id).count() == 2


def test_events_of_one_order_arriving_out_of_order_end_in_the_in_order_state(start_saga):
    # given only the monolith's handlers running, and an order waiting for its payment
    start_saga("orders")
    order = place_order(GOOD_CARD)
    order_id, now = order.pk, timezone.now().isoformat()
    shipped = {
        "order_id": order_id,
        "tracking_number": str(uuid.uuid4()),
        "carrier": "UPS",
        "customer_email": "x@example.com",
    }
    # when the saga's later events are published first: delivered, dispatched, then authorized
    with transaction.atomic():
        for event_type, payload in [
            (SHIPMENT_DELIVERED, {**shipped, "delivered_at": now}),
            (SHIPMENT_DISPATCHED, {**shipped, "dispatched_at": now}),
        ]:
            record_event(event_type, aggregate_id=str(order_id), payload=payload)
        record_event(
            PAYMENT_AUTHORIZED,
            aggregate_id=str(order_id),
            payload={
                "order_id": order_id,
                "amount": f"{order.total:.2f}",
                "currency": "USD",
                "transaction_id": str(uuid.uuid4()),
                "card_brand": "visa",
                "card_last4": "2222",
            },
        )
    # then each early event waits for its predecessor and the order ends as if they were in order
    wait_status(order, OrderStatus.DELIVERED)
    assert timeline(order) == [
        "orders.order.placed",
        "payments.payment.authorized",
        "shipping.shipment.dispatched",
        "shipping.shipment.delivered",
    ]


@pytest.fixture
def payments_database() -> Iterator[str]:
    """A separate, migrated PostgreSQL database for the payments service; its URL."""
    name = f"test_fitness_payments_{uuid.uuid4().hex[:8]}"
    url = database_url().rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(database_url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "fitness.settings.test",
        "DATABASE_URL": database_url(),
        "PAYMENTS_DATABASE_URL": url,
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--database", "payments", "-v", "0"],
        cwd=BASE_DIR,
        env=environment,
        check=True,
    )
    yield url
    with psycopg.connect(database_url(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_payments_can_run_on_a_database_of_its_own(start_saga, payments_database):
    # given every service running, payments with its own database and a relay for its outbox
    start_saga(relay_databases=("default", "payments"), PAYMENTS_DATABASE_URL=payments_database)
    # when an order is placed
    order = place_order(GOOD_CARD)
    # then the saga completes, and the payment lives in the payments database only
    wait_status(order, OrderStatus.DELIVERED)
    with psycopg.connect(payments_database) as own:
        rows = own.execute("SELECT order_id, status FROM payments_payment").fetchall()
        published = own.execute(
            "SELECT type FROM outbox_message WHERE published_at IS NOT NULL"
        ).fetchall()
    assert rows == [(order.pk, "authorized")]
    assert published == [("payments.payment.authorized",)]
    assert not Payment.objects.using("default").exists()


def test_a_payments_worker_killed_between_commit_and_ack_charges_once(start_saga):
    # given a payments worker that pauses after its commit and before its ack (test-only hook)
    _relay, paused = start_saga("payments", OUTBOX_TEST_PAUSE_BEFORE_ACK="30")
    order = place_order(GOOD_CARD)
    wait_for(lambda: "pausing before ack" in paused.log, 20, "the commit before the ack")
    assert Payment.objects.filter(order_id=order.pk).count() == 1
    # when it is killed right there, and a normal worker takes over
    paused.process.kill()
    paused.process.wait(10)
    (restarted,) = start_saga("payments", relay_databases=())
    # then the redelivered event is recognised and the card is charged exactly once
    wait_for(lambda: "duplicate ignored" in restarted.log, 20, "the redelivery")
    assert Payment.objects.filter(order_id=order.pk).count() == 1
    authorized = OutboxMessage.objects.filter(
        type="payments.payment.authorized", aggregate_id=str(order.pk)
    )
    assert authorized.count() == 1
