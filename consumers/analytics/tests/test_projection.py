"""The analytics projection in-process: idempotent, order-tolerant handlers and the figures."""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction

from consumers.analytics.handlers import service
from consumers.analytics.models import OrderFact, OrderLineFact, ProductDailySales
from consumers.analytics.selectors import analytics_figures
from outbox.consumer.events import ReceivedEvent
from outbox.consumer.models import InboxEntry
from outbox.consumer.reset import service_reset

pytestmark = pytest.mark.django_db(databases=["default", "analytics"])

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _event(type_: str, payload: dict, at: datetime) -> ReceivedEvent:
    return ReceivedEvent(
        id=uuid.uuid4(),
        type=type_,
        version=1,
        source="test",
        subject=str(payload["order_id"]),
        sequence=1,
        time=at,
        correlation_id="c",
        causation_id=None,
        payload=payload,
        headers={},
    )


def placed(order_id: int, at: datetime = T0, lines=((1, "MAT", "10.00", 2),)) -> ReceivedEvent:
    payload_lines = [
        {"product_id": p, "sku": sku, "name": f"Product {sku}", "unit_price": price, "quantity": q}
        for p, sku, price, q in lines
    ]
    total = sum(Decimal(price) * q for _, _, price, q in lines)
    return _event(
        "orders.order.placed",
        {"order_id": order_id, "lines": payload_lines, "total": f"{total:.2f}", "currency": "USD"},
        at,
    )


def step(type_: str, order_id: int, at: datetime, **extra) -> ReceivedEvent:
    return _event(type_, {"order_id": order_id, **extra}, at)


def apply(*events: ReceivedEvent) -> None:
    for event in events:
        handler = service.handler_for(event.type, event.version)
        with transaction.atomic(using=service.database):
            handler(event)


def saga(order_id: int, *, declined: bool = False, delivered_after: float | None = None):
    """A happy or declined saga's events for one order, in order."""
    events = [placed(order_id)]
    if declined:
        return [*events, step("payments.payment.declined", order_id, T0, reason="card_declined")]
    events.append(step("payments.payment.authorized", order_id, T0, amount="20.00"))
    if delivered_after is not None:
        events.append(step("shipping.shipment.dispatched", order_id, T0))
        done = T0 + timedelta(seconds=delivered_after)
        events.append(step("shipping.shipment.delivered", order_id, done))
    return events


def test_figures_of_a_few_orders():
    # given two delivered orders (1 h and 3 h after checkout), one paid, one declined
    apply(*saga(1, delivered_after=3600), *saga(2, delivered_after=3 * 3600), *saga(3))
    apply(*saga(4, declined=True))
    figures = analytics_figures()
    # then sales count the three paid orders, the decline rate is 1 in 4
    assert figures.by_status == {
        "pending_payment": 0,
        "paid": 1,
        "payment_failed": 1,
        "shipped": 0,
        "delivered": 2,
        "cancelled": 0,
    }
    assert figures.steps["placed"] == 4
    assert figures.decline_rate == pytest.approx(0.25)
    assert figures.revenue == Decimal("60.00")
    assert figures.units == 6
    assert [(d.day.isoformat(), d.units, d.revenue) for d in figures.sales_by_day] == [
        ("2026-11-20", 6, Decimal("60.00"))
    ]
    assert figures.delivered_orders == 2
    assert figures.delivery_avg_seconds == pytest.approx(2 * 3600)
    assert figures.delivery_median_seconds == pytest.approx(2 * 3600)


def test_events_in_any_order_and_twice_give_the_same_projection():
    # given the same sagas applied in order once, and reversed with every event twice
    events = [*saga(1, delivered_after=60), *saga(2, declined=True), *saga(3)]
    apply(*events)
    expected = analytics_figures()
    service_reset(service)
    assert not OrderFact.objects.exists()
    shuffled = list(reversed(events))
    apply(*shuffled, *shuffled)
    # then the figures are the same
    assert analytics_figures() == expected
    assert OrderLineFact.objects.count() == 3


def test_a_cancelled_and_refunded_order_is_no_longer_a_sale():
    apply(*saga(1), *saga(2))
    assert analytics_figures().units == 4
    # when order 2 is cancelled and refunded
    apply(step("orders.order.cancelled", 2, T0 + timedelta(minutes=5)))
    apply(step("payments.payment.refunded", 2, T0 + timedelta(minutes=6), amount="20.00"))
    # then it leaves the sales and the revenue, and shows as cancelled
    figures = analytics_figures()
    assert (figures.units, figures.revenue) == (2, Decimal("20.00"))
    assert figures.by_status["cancelled"] == 1
    assert ProductDailySales.objects.get().units == 2


def test_sales_per_product_and_day():
    day2 = T0 + timedelta(days=1)
    apply(
        placed(1, lines=((1, "MAT", "10.00", 1), (2, "BOTTLE", "5.50", 4))),
        step("payments.payment.authorized", 1, T0, amount="32.00"),
        placed(2, at=day2, lines=((2, "BOTTLE", "5.50", 1),)),
        step("payments.payment.authorized", 2, day2, amount="5.50"),
    )
    figures = analytics_figures()
    by_product = {p.sku: (p.units, p.revenue) for p in figures.sales_by_product}
    assert by_product == {"MAT": (1, Decimal("10.00")), "BOTTLE": (5, Decimal("27.50"))}
    assert [(d.units, d.revenue) for d in figures.sales_by_day] == [
        (5, Decimal("32.00")),
        (1, Decimal("5.50")),
    ]


def test_reset_wipes_the_tables_and_the_inbox_of_the_service_only():
    apply(*saga(1))
    for name in ("analytics", "payments"):
        InboxEntry.objects.using(service.database).create(
            service=name, event_id=uuid.uuid4(), event_type="t", received_at=T0
        )
    result = service_reset(service)
    assert (result.inbox_rows, OrderFact.objects.count()) == (1, 0)
    inbox = InboxEntry.objects.using(service.database)
    assert list(inbox.values_list("service", flat=True)) == ["payments"]
