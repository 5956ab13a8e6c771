"""The notifications service's own tables: whom to write to, and what was written."""

from django.db import models


class Recipient(models.Model):
    """The customer of an order, learnt from ``orders.order.placed`` (events that follow do not
    all carry the address, and this service never reads the shop's tables)."""

    order_id = models.BigIntegerField(unique=True)
    email = models.CharField(max_length=254)
    name = models.CharField(max_length=150)

    def __str__(self) -> str:
        return f"{self.name} <{self.email}> (order {self.order_id})"


class Notification(models.Model):
    """One e-mail sent about one step of one order; unique per (order, kind)."""

    order_id = models.BigIntegerField()
    kind = models.CharField(max_length=64)
    recipient = models.CharField(max_length=254)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    event_id = models.UUIDField(unique=True)
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["sent_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["order_id", "kind"], name="notification_once_per_step")
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.recipient} (order {self.order_id})"
