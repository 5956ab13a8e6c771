"""The payments service's own tables. It keeps no card number: brand, last four and a token."""

from django.db import models


class Payment(models.Model):
    """The charge for one order: authorized or declined, later maybe refunded."""

    class Status(models.TextChoices):
        AUTHORIZED = "authorized", "Authorized"
        DECLINED = "declined", "Declined"
        REFUNDED = "refunded", "Refunded"

    order_id = models.BigIntegerField(unique=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    card_brand = models.CharField(max_length=20)
    card_last4 = models.CharField(max_length=4)
    transaction_id = models.UUIDField(null=True, blank=True)
    decline_reason = models.CharField(max_length=64, blank=True, default="")
    correlation_id = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    refunded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Payment for order {self.order_id}: {self.status} {self.amount} {self.currency}"


class CancelledOrder(models.Model):
    """An order the service heard was cancelled. A late ``orders.order.placed`` for it is not
    charged (the two events travel independently and may arrive in either order)."""

    order_id = models.BigIntegerField(unique=True)
    reason = models.CharField(max_length=255, blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Order {self.order_id} cancelled"
