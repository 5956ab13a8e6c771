"""The shipping service's own tables: one shipment per paid order, and the cancelled orders."""

from django.db import models


class Shipment(models.Model):
    """A parcel on its way: dispatched with a tracking number, later delivered."""

    class Status(models.TextChoices):
        DISPATCHED = "dispatched", "Dispatched"
        DELIVERED = "delivered", "Delivered"

    order_id = models.BigIntegerField(unique=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    tracking_number = models.UUIDField(unique=True)
    carrier = models.CharField(max_length=32)
    delivery_method = models.CharField(max_length=16)
    customer_email = models.CharField(max_length=254, blank=True, default="")
    correlation_id = models.CharField(max_length=100)
    dispatched_at = models.DateTimeField()
    deliver_after = models.DateTimeField(db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-dispatched_at"]
        indexes = [
            models.Index(
                fields=["deliver_after"],
                name="shipment_due_idx",
                condition=models.Q(status="dispatched"),
            )
        ]

    def __str__(self) -> str:
        return f"Shipment {self.tracking_number} ({self.status}) for order {self.order_id}"


class CancelledOrder(models.Model):
    """An order the shop cancelled (``orders.order.cancelled``): it is never dispatched.

    The cancellation and the payment's authorization come from different producers and may
    reach shipping in either order, so the cancellation is remembered. When the parcel had
    already left, it stays with the carrier and ``parcel_already_dispatched`` flags the order
    for an operator, who arranges its return (docs/consumers.md, "Shipping and cancellations").
    """

    order_id = models.BigIntegerField(unique=True)
    reason = models.CharField(max_length=255, blank=True, default="")
    parcel_already_dispatched = models.BooleanField(default=False)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"Order {self.order_id} cancelled"
