"""The analytics service's own tables: what it learnt about each order, and sales per day.

``OrderFact`` and ``OrderLineFact`` are facts keyed by order: every handler *sets* the columns
its event describes (never increments), so applying an event twice, or events in any order,
gives the same rows. ``ProductDailySales`` is derived from them: recomputed for the (day,
product) pairs an event touched, so it stays exact however the events arrive.
"""

from django.db import models


class OrderFact(models.Model):
    """One order as seen through its events. A column is null until its event arrived.

    Times are the events' own (CloudEvents ``time``), not when analytics received them, so a
    rebuild from the log gives the same figures as live consumption.
    """

    order_id = models.BigIntegerField(unique=True)
    placed_at = models.DateTimeField(null=True, blank=True)
    placed_day = models.DateField(null=True, blank=True, help_text="UTC day of placed_at.")
    total = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, default="")
    paid_at = models.DateTimeField(null=True, blank=True)
    paid_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    declined_at = models.DateTimeField(null=True, blank=True)
    decline_reason = models.CharField(max_length=64, blank=True, default="")
    dispatched_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    refunded_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)

    class Meta:
        db_table = "analytics_order"

    def __str__(self) -> str:
        return f"Order {self.order_id} ({self.status})"

    @property
    def status(self) -> str:
        """Where the order is, from the furthest step its events reported."""
        if self.cancelled_at:
            return "cancelled"
        for status, at in (
            ("delivered", self.delivered_at),
            ("shipped", self.dispatched_at),
            ("paid", self.paid_at),
            ("payment_failed", self.declined_at),
        ):
            if at:
                return status
        return "pending_payment" if self.placed_at else "unknown"


class OrderLineFact(models.Model):
    """A line of a placed order (from ``orders.order.placed``)."""

    order_id = models.BigIntegerField()
    position = models.PositiveSmallIntegerField()
    product_id = models.BigIntegerField()
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)
    quantity = models.PositiveIntegerField()

    class Meta:
        db_table = "analytics_order_line"
        constraints = [
            models.UniqueConstraint(
                fields=["order_id", "position"], name="analytics_order_line_uniq"
            ),
        ]
        indexes = [models.Index(fields=["product_id"], name="analytics_line_product_idx")]

    def __str__(self) -> str:
        return f"Order {self.order_id}: {self.quantity} x {self.sku}"


class ProductDailySales(models.Model):
    """Units and revenue (unit price x quantity) of one product on one day.

    Counted: orders whose payment was authorized and that were neither cancelled nor refunded,
    on the UTC day the order was placed. A row exists only while its units are above zero.
    """

    day = models.DateField()
    product_id = models.BigIntegerField()
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    units = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=14, decimal_places=2, default=0)

    class Meta:
        db_table = "analytics_product_daily_sales"
        verbose_name_plural = "product daily sales"
        constraints = [
            models.UniqueConstraint(fields=["day", "product_id"], name="analytics_sales_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.sku}: {self.units} units, {self.revenue}"
