"""Read side of the analytics service: the figures of the staff page, from its own tables only."""

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.db import connections
from django.db.models import Case, Count, Q, Sum, Value, When

from consumers.analytics.models import OrderFact, ProductDailySales

DATABASE = "analytics"
ZERO = Decimal("0.00")
# The furthest step an order's events reported decides its status (OrderFact.status in SQL).
STATUS = Case(
    When(cancelled_at__isnull=False, then=Value("cancelled")),
    When(delivered_at__isnull=False, then=Value("delivered")),
    When(dispatched_at__isnull=False, then=Value("shipped")),
    When(paid_at__isnull=False, then=Value("paid")),
    When(declined_at__isnull=False, then=Value("payment_failed")),
    When(placed_at__isnull=False, then=Value("pending_payment")),
    default=Value("unknown"),
)
STATUSES = ("pending_payment", "paid", "payment_failed", "shipped", "delivered", "cancelled")
DELIVERY_TIME_SQL = """
SELECT count(*),
       avg(extract(epoch FROM delivered_at - placed_at)),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - placed_at))
FROM analytics_order
WHERE placed_at IS NOT NULL AND delivered_at IS NOT NULL
"""


@dataclass(frozen=True)
class DaySales:
    day: date
    units: int
    revenue: Decimal


@dataclass(frozen=True)
class ProductSales:
    product_id: int
    sku: str
    name: str
    units: int
    revenue: Decimal


@dataclass(frozen=True)
class Figures:
    """Everything the staff page shows. Equal figures <=> equal projections (tests compare)."""

    by_status: dict[str, int]  # where each order is now
    steps: dict[str, int]  # how many orders reached each step: placed, paid, declined...
    decline_rate: float | None  # declined / (paid + declined)
    authorized: Decimal  # payments authorized
    refunded: Decimal  # ...and refunded
    sales_by_day: list[DaySales] = field(default_factory=list)
    sales_by_product: list[ProductSales] = field(default_factory=list)
    delivered_orders: int = 0
    delivery_avg_seconds: float | None = None
    delivery_median_seconds: float | None = None

    @property
    def revenue(self) -> Decimal:
        """Net revenue: authorized payments minus refunds (delivery costs included)."""
        return self.authorized - self.refunded

    @property
    def units(self) -> int:
        return sum(day.units for day in self.sales_by_day)

    @property
    def sales_revenue(self) -> Decimal:
        """Goods sold (unit price x quantity of paid, not cancelled orders)."""
        return sum((day.revenue for day in self.sales_by_day), ZERO)


def analytics_figures(*, using: str = DATABASE) -> Figures:
    """Compute the figures from the analytics tables (a handful of aggregate queries)."""
    orders = OrderFact.objects.using(using)
    counts = dict(orders.annotate(s=STATUS).values_list("s").annotate(n=Count("id")))
    by_status = {status: counts.get(status, 0) for status in STATUSES}
    if counts.get("unknown"):
        by_status["unknown"] = counts["unknown"]
    steps = orders.aggregate(
        placed=Count("placed_at"),
        paid=Count("paid_at"),
        declined=Count("declined_at"),
        shipped=Count("dispatched_at"),
        delivered=Count("delivered_at"),
        cancelled=Count("cancelled_at"),
        refunded=Count("refunded_at"),
        authorized=Sum("paid_amount", default=ZERO),
        refunded_amount=Sum("refunded_amount", default=ZERO, filter=Q(paid_at__isnull=False)),
    )
    authorized, refunded = steps.pop("authorized"), steps.pop("refunded_amount")
    charged = steps["paid"] + steps["declined"]
    sales = ProductDailySales.objects.using(using)
    by_day = [
        DaySales(day=row["day"], units=row["units"], revenue=row["revenue"])
        for row in sales.values("day")
        .annotate(units=Sum("units"), revenue=Sum("revenue"))
        .order_by("day")
    ]
    by_product = [
        ProductSales(**row)
        for row in sales.values("product_id", "sku", "name")
        .annotate(units=Sum("units"), revenue=Sum("revenue"))
        .order_by("-revenue", "sku")
    ]
    with connections[using].cursor() as cursor:
        cursor.execute(DELIVERY_TIME_SQL)
        delivered, avg, median = cursor.fetchone()
    return Figures(
        by_status=by_status,
        steps=steps,
        decline_rate=steps["declined"] / charged if charged else None,
        authorized=authorized,
        refunded=refunded,
        sales_by_day=by_day,
        sales_by_product=by_product,
        delivered_orders=delivered,
        delivery_avg_seconds=float(avg) if avg is not None else None,
        delivery_median_seconds=float(median) if median is not None else None,
    )
