"""Replay and analytics with the real processes: fixtures of the saga tests, plus an oracle.

``figures_from_log`` computes the analytics figures straight from the published outbox rows, in
plain Python and independently of the analytics service: what a service that saw every event
must show.
"""

import contextlib
import statistics
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import amqp
import pytest
from django.db import transaction
from django.utils import timezone

from apps.carts.services import cart_add_item
from apps.orders.models import Order, OrderStatus
from apps.orders.services import CardInput, ShippingAddress, order_cancel, order_place
from consumers.analytics.handlers import service as analytics
from consumers.analytics.selectors import STATUSES, DaySales, Figures, ProductSales
from consumers.payments.events import PAYMENT_AUTHORIZED, PAYMENT_DECLINED, PAYMENT_REFUNDED
from consumers.shipping.events import SHIPMENT_DELIVERED, SHIPMENT_DISPATCHED
from outbox.consumer.service import get_service
from outbox.models import OutboxMessage
from outbox.recording import record_event
from outbox.signing import sign_row
from outbox.tests.helpers import broker_connection, wait_for
from outbox.tests.processes import ChildProcess
from tests.factories import ADDRESS, DECLINED_CARD, GOOD_CARD, make_customer, make_product
from tests.saga.conftest import mail_dir, manage_command, start_saga  # noqa: F401 (fixtures)

ANALYTICS_TYPES = {type_ for type_, _ in analytics.handled_types()}


def place_orders(
    count: int, *, declined_every: int | None = 4, cancelled_every: int | None = 15
) -> list[Order]:
    """``count`` orders through the real checkout: some with the declined test card, some
    cancelled at once by their customer (real ``placed`` and ``cancelled`` events)."""
    products = [make_product(price=Decimal(price), stock=10_000) for price in ("9.99", "24.50")]
    orders = []
    for i in range(count):
        customer = make_customer()
        for product in products[: 1 + i % 2]:
            cart_add_item(customer=customer, product_id=product.pk, quantity=1 + i % 3)
        card = DECLINED_CARD if declined_every and i % declined_every == 1 else GOOD_CARD
        order = order_place(
            customer=customer,
            address=ShippingAddress(**ADDRESS),
            delivery="standard",
            card=CardInput(**card),
        )
        if cancelled_every and i % cancelled_every == cancelled_every - 1:
            order = order_cancel(customer=customer, order_id=order.pk)
        orders.append(order)
    return orders


def record_saga(orders: list[Order], *, delivered_every: int = 1) -> None:
    """What payments and shipping would publish for ``orders``, recorded on their databases.

    Faster than running their workers (the tests are about analytics and replay): the declined
    test card is declined, a cancelled order that was charged is refunded, every other paid order
    is dispatched, and delivered unless ``i % delivered_every == delivered_every - 1``. The
    checkout-to-delivery times are spread over hours by moving the delivered events' times.
    """
    for i, order in enumerate(orders):
        payload = {"order_id": order.pk, "amount": f"{order.total:.2f}", "currency": "USD"}
        with transaction.atomic(using="payments"):
            if order.card_last4 == DECLINED_CARD["number"][-4:]:
                _record(
                    PAYMENT_DECLINED,
                    order,
                    "payments",
                    **payload,
                    reason="card_declined",
                    message="no",
                )
                continue
            transaction_id = str(uuid.uuid4())
            _record(
                PAYMENT_AUTHORIZED,
                order,
                "payments",
                **payload,
                transaction_id=transaction_id,
                card_brand=order.card_brand,
                card_last4=order.card_last4,
            )
            if order.status == OrderStatus.CANCELLED:
                _record(
                    PAYMENT_REFUNDED, order, "payments", **payload, transaction_id=transaction_id
                )
                continue
        shipped = {"tracking_number": str(uuid.uuid4()), "carrier": "USPS"}
        now = timezone.now()
        with transaction.atomic(using="shipping"):
            _record(
                SHIPMENT_DISPATCHED, order, "shipping", **shipped, dispatched_at=now.isoformat()
            )
            if i % delivered_every == delivered_every - 1:
                continue
            later = now + timedelta(hours=1 + i % 7, minutes=i)
            row = _record(
                SHIPMENT_DELIVERED, order, "shipping", **shipped, delivered_at=later.isoformat()
            )
            # The time is signed: sign again, as if shipping had recorded the event then.
            row.occurred_at = later
            sign_row(row)
            OutboxMessage.objects.using("shipping").filter(pk=row.pk).update(
                occurred_at=later, headers=row.headers
            )


def _record(event_type, order: Order, using: str, **payload) -> OutboxMessage:
    return record_event(
        event_type,
        aggregate_id=str(order.pk),
        payload={**payload, "order_id": order.pk},
        correlation_id=str(order.correlation_id),
        using=using,
    )


def wait_until_published(timeout: float = 60.0) -> int:
    """Wait until the relay published every outbox row; how many rows there are."""
    wait_for(
        lambda: not OutboxMessage.objects.filter(published_at__isnull=True).exists(),
        timeout,
        "the relay to publish every row",
    )
    return OutboxMessage.objects.count()


def analytics_events(**filters) -> list[OutboxMessage]:
    """The published events analytics handles, in id order."""
    return list(
        OutboxMessage.objects.filter(
            published_at__isnull=False, type__in=ANALYTICS_TYPES, **filters
        ).order_by("id")
    )


def figures_from_log() -> Figures:
    """The analytics figures computed from the published events alone (the test's oracle)."""
    orders: dict[int, dict] = defaultdict(dict)
    for row in analytics_events():
        step = row.type.rsplit(".", 1)[1]
        orders[row.payload["order_id"]][step] = row
    by_status = dict.fromkeys(STATUSES, 0)
    steps = dict.fromkeys(
        ["placed", "paid", "declined", "shipped", "delivered", "cancelled", "refunded"], 0
    )
    names = {"authorized": "paid", "dispatched": "shipped"}
    authorized = refunded = Decimal("0.00")
    sales: dict[tuple, list] = defaultdict(lambda: [0, Decimal("0.00")])
    durations = []
    for events in orders.values():
        for step in events:
            steps[names.get(step, step)] += 1
        for status, step in [
            ("cancelled", "cancelled"),
            ("delivered", "delivered"),
            ("shipped", "dispatched"),
            ("paid", "authorized"),
            ("payment_failed", "declined"),
            ("pending_payment", "placed"),
        ]:
            if step in events:
                by_status[status] += 1
                break
        if "authorized" in events:
            authorized += Decimal(events["authorized"].payload["amount"])
            if "refunded" in events:
                refunded += Decimal(events["refunded"].payload["amount"])
        placed = events.get("placed")
        if placed and "delivered" in events:
            durations.append((events["delivered"].occurred_at - placed.occurred_at).total_seconds())
        counted = "authorized" in events and not {"cancelled", "refunded"} & set(events)
        if placed and counted:
            for line in placed.payload["lines"]:
                key = (placed.occurred_at.date(), line["product_id"], line["sku"], line["name"])
                sales[key][0] += line["quantity"]
                sales[key][1] += Decimal(line["unit_price"]) * line["quantity"]
    per_day: dict = defaultdict(lambda: [0, Decimal("0.00")])
    per_product: dict = defaultdict(lambda: [0, Decimal("0.00")])
    for (day, product_id, sku, name), (units, revenue) in sales.items():
        per_day[day][0] += units
        per_day[day][1] += revenue
        per_product[(product_id, sku, name)][0] += units
        per_product[(product_id, sku, name)][1] += revenue
    charged = steps["paid"] + steps["declined"]
    return Figures(
        by_status=by_status,
        steps=steps,
        decline_rate=steps["declined"] / charged if charged else None,
        authorized=authorized,
        refunded=refunded,
        sales_by_day=[DaySales(day, *per_day[day]) for day in sorted(per_day)],
        sales_by_product=sorted(
            (ProductSales(p, sku, name, *v) for (p, sku, name), v in per_product.items()),
            key=lambda s: (-s.revenue, s.sku),
        ),
        delivered_orders=len(durations),
        delivery_avg_seconds=statistics.mean(durations) if durations else None,
        delivery_median_seconds=statistics.median(durations) if durations else None,
    )


def assert_same_figures(actual: Figures, expected: Figures) -> None:
    """Equal, with the delivery times compared to the microsecond (SQL vs Python float)."""
    for name in ("delivery_avg_seconds", "delivery_median_seconds"):
        assert getattr(actual, name) == pytest.approx(getattr(expected, name), abs=1e-5)
    assert actual.__dict__ | _no_times() == expected.__dict__ | _no_times()


def _no_times() -> dict:
    return {"delivery_avg_seconds": None, "delivery_median_seconds": None}


def queue_depth(name: str) -> int:
    connection = broker_connection()
    try:
        return connection.channel().queue_declare(name, passive=True)[1]
    finally:
        connection.close()


def delete_queue(name: str) -> None:
    connection = broker_connection()
    try:
        with contextlib.suppress(amqp.exceptions.NotFound):
            connection.channel().queue_delete(name)
    finally:
        connection.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., ChildProcess]]:
    """Start ``manage.py <command>`` children; all are stopped (and their logs shown on failure)
    at the end of the test."""
    started: list[ChildProcess] = []

    def spawn(*command: str, **env: str) -> ChildProcess:
        started.append(manage_command(tmp_path, *command, **env))
        return started[-1]

    yield spawn
    for process in started:
        process.stop()
        print(f"----- {process.log_path.name}\n{process.log[-6000:]}")


def handled_in_log(worker: ChildProcess, *, run: str | None = None) -> dict[str, int]:
    """How often the worker logged each event id as handled (for one replay run, if given)."""
    counts: dict[str, int] = defaultdict(int)
    for line in worker.log.splitlines():
        if ": handled event=" in line and (run is None or f"replay={run}" in line):
            counts[line.split("event=")[1].split()[0]] += 1
    return counts


def duplicates_in_log(worker: ChildProcess, *, run: str) -> int:
    return sum(1 for line in worker.log.splitlines() if "duplicate ignored" in line and run in line)


def other_queues() -> list[str]:
    return [get_service(name).queue_name for name in ("payments", "shipping", "notifications")]
