"""The shipping service's own table: one shipment per paid order."""

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
