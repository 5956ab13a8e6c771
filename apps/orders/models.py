"""Orders: what a customer bought, where it goes, how it is paid, and what happened to it."""

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models

from apps.catalog.models import Product


class OrderStatus(models.TextChoices):
    """The order's state machine; transitions live in ``apps.orders.state``."""

    PENDING_PAYMENT = "pending_payment", "Pending payment"
    PAID = "paid", "Paid"
    SHIPPED = "shipped", "Shipped"
    DELIVERED = "delivered", "Delivered"
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    CANCELLED = "cancelled", "Cancelled"


class DeliveryMethod(models.TextChoices):
    """How the parcel travels; the price is in ``apps.orders.delivery``."""

    STANDARD = "standard", "Standard (3-5 days)"
    EXPRESS = "express", "Express (next day)"


class Order(models.Model):
    """A placed order. Only brand, last four digits, expiry and a token of the card are kept."""

    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    status = models.CharField(
        max_length=20, choices=OrderStatus.choices, default=OrderStatus.PENDING_PAYMENT
    )
    subtotal = models.DecimalField(max_digits=12, decimal_places=2)
    delivery_cost = models.DecimalField(max_digits=10, decimal_places=2)
    total = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")

    ship_name = models.CharField(max_length=120)
    ship_street = models.CharField(max_length=200)
    ship_city = models.CharField(max_length=100)
    ship_zip = models.CharField(max_length=20)
    ship_country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2 code.")
    delivery_method = models.CharField(max_length=16, choices=DeliveryMethod.choices)

    card_brand = models.CharField(max_length=20)
    card_last4 = models.CharField(max_length=4)
    card_exp_month = models.PositiveSmallIntegerField()
    card_exp_year = models.PositiveSmallIntegerField()
    payment_token = models.CharField(max_length=64)

    # Every event of this order's saga, in every service, carries this correlation id.
    correlation_id = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    placed_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-placed_at", "-id"]
        indexes = [models.Index(fields=["customer", "-placed_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(total__gte=Decimal("0")), name="order_total_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"Order #{self.pk} ({self.get_status_display()})"


class OrderLine(models.Model):
    """A product in an order, with the name and price it had when the order was placed."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    sku = models.CharField(max_length=32)
    name = models.CharField(max_length=120)
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)
    quantity = models.PositiveIntegerField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="order_line_quantity_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.name}"

    @property
    def line_total(self) -> Decimal:
        """Unit price times quantity."""
        return self.unit_price * self.quantity


class OrderTimelineEntry(models.Model):
    """One thing that happened to an order (placed, paid, shipped...), oldest first.

    ``event_id`` is the integration event that caused it, when there is one; it is unique so
    that a redelivered event cannot add the same entry twice.
    """

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="timeline")
    kind = models.CharField(max_length=64)
    status = models.CharField(max_length=20, choices=OrderStatus.choices)
    message = models.CharField(max_length=255)
    source = models.CharField(max_length=64, default="orders")
    event_id = models.UUIDField(null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "order timeline entries"

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"
