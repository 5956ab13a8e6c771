"""Write side of the analytics service: apply one event to its tables.

Every function runs inside the consumer framework's transaction (together with the inbox row),
on the ``analytics`` database alias, and is idempotent and order-tolerant:

* each event *sets* the columns of its order's :class:`OrderFact` that it knows about (an upsert
  that also locks the order's row, so two workers handling two events of one order run one after
  the other and the second sees the first's commit);
* sales per (day, product) are recomputed from the facts after every change that can affect
  them — never incremented — so a duplicate or a late event cannot skew them. The (day, product)
  row is locked *before* the sum is read, so concurrent orders of one product cannot lose an
  update (in READ COMMITTED the sum statement then sees every committed order).

An event that arrives before its predecessor (``delivered`` before ``placed``) simply fills its
columns; figures that need both (checkout-to-delivery) are computed when both are known.
"""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import connections

from consumers.analytics.models import OrderFact, OrderLineFact, ProductDailySales

DATABASE = "analytics"

LOCK_SALES_ROW_SQL = """
INSERT INTO analytics_product_daily_sales (day, product_id, sku, name, units, revenue)
VALUES (%s, %s, %s, %s, 0, 0)
ON CONFLICT (day, product_id) DO UPDATE SET sku = EXCLUDED.sku, name = EXCLUDED.name
"""
RECOMPUTE_SALES_SQL = """
UPDATE analytics_product_daily_sales AS s
SET units = x.units, revenue = x.revenue
FROM (
    SELECT coalesce(sum(l.quantity), 0) AS units,
           coalesce(sum(l.quantity * l.unit_price), 0) AS revenue
    FROM analytics_order_line AS l
    JOIN analytics_order AS o ON o.order_id = l.order_id
    WHERE o.placed_day = %(day)s AND l.product_id = %(product)s
      AND o.paid_at IS NOT NULL AND o.cancelled_at IS NULL AND o.refunded_at IS NULL
) AS x
WHERE s.day = %(day)s AND s.product_id = %(product)s
"""


def _set_facts(order_id: int, **fields: Any) -> None:
    """Insert the order's fact row or set ``fields`` on it; the row stays locked until commit."""
    OrderFact.objects.using(DATABASE).bulk_create(
        [OrderFact(order_id=order_id, **fields)],
        update_conflicts=True,
        unique_fields=["order_id"],
        update_fields=list(fields),
    )


def _recompute_sales(order_id: int) -> None:
    """Recompute the (day, product) sales rows the order's lines fall into."""
    order = OrderFact.objects.using(DATABASE).get(order_id=order_id)
    if order.placed_day is None or order.paid_at is None:
        # Facts are only ever set, never cleared: an order that is not both placed and paid now
        # was not before either, so it was not counted and still is not. Nothing to recompute.
        return
    lines = OrderLineFact.objects.using(DATABASE).filter(order_id=order_id)
    products = sorted({(line.product_id, line.sku, line.name) for line in lines})
    with connections[DATABASE].cursor() as cursor:
        for product_id, sku, name in products:  # sorted: concurrent orders lock in one order
            cursor.execute(LOCK_SALES_ROW_SQL, [order.placed_day, product_id, sku, name])
            cursor.execute(RECOMPUTE_SALES_SQL, {"day": order.placed_day, "product": product_id})
    ProductDailySales.objects.using(DATABASE).filter(
        day=order.placed_day, product_id__in=[p[0] for p in products], units=0
    ).delete()


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def analytics_order_placed(*, order_id: int, at: datetime, payload: dict[str, Any]) -> None:
    """``orders.order.placed``: the order's time, total and lines."""
    _set_facts(
        order_id,
        placed_at=_utc(at),
        placed_day=_utc(at).date(),
        total=Decimal(payload["total"]),
        currency=payload["currency"],
    )
    lines = OrderLineFact.objects.using(DATABASE)
    lines.filter(order_id=order_id).delete()
    lines.bulk_create(
        OrderLineFact(
            order_id=order_id,
            position=position,
            product_id=line["product_id"],
            sku=line["sku"],
            name=line["name"],
            unit_price=Decimal(line["unit_price"]),
            quantity=line["quantity"],
        )
        for position, line in enumerate(payload["lines"])
    )
    _recompute_sales(order_id)


def analytics_payment_authorized(*, order_id: int, at: datetime, amount: str) -> None:
    """``payments.payment.authorized``: the order is paid (its lines become sales)."""
    _set_facts(order_id, paid_at=_utc(at), paid_amount=Decimal(amount))
    _recompute_sales(order_id)


def analytics_payment_declined(*, order_id: int, at: datetime, reason: str) -> None:
    """``payments.payment.declined``: counts towards the decline rate."""
    _set_facts(order_id, declined_at=_utc(at), decline_reason=reason[:64])


def analytics_shipment_dispatched(*, order_id: int, at: datetime) -> None:
    """``shipping.shipment.dispatched``."""
    _set_facts(order_id, dispatched_at=_utc(at))


def analytics_shipment_delivered(*, order_id: int, at: datetime) -> None:
    """``shipping.shipment.delivered``: ends the checkout-to-delivery time."""
    _set_facts(order_id, delivered_at=_utc(at))


def analytics_order_cancelled(*, order_id: int, at: datetime) -> None:
    """``orders.order.cancelled``: the order's lines no longer count as sales."""
    _set_facts(order_id, cancelled_at=_utc(at))
    _recompute_sales(order_id)


def analytics_payment_refunded(*, order_id: int, at: datetime, amount: str) -> None:
    """``payments.payment.refunded``: taken off the revenue."""
    _set_facts(order_id, refunded_at=_utc(at), refunded_amount=Decimal(amount))
    _recompute_sales(order_id)


def analytics_reset(using: str) -> None:
    """Delete every analytics row (the reset hook of ``rebuild_projection analytics``)."""
    for model in (ProductDailySales, OrderLineFact, OrderFact):
        model.objects.using(using).all().delete()
