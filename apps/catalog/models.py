"""Catalog: the products the shop sells and how many of each are in stock."""

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models


class Product(models.Model):
    """A product of the ACME catalog. ``stock`` is what can still be ordered (never negative)."""

    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    price = models.DecimalField(
        max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0.00"))]
    )
    image = models.CharField(
        max_length=64, help_text="Name of the picture under static/catalog/img/ (without .svg)."
    )
    tags = models.JSONField(default=list, blank=True)
    stock = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(stock__gte=0), name="product_stock_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(price__gte=0), name="product_price_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"

    @property
    def image_path(self) -> str:
        """Static path of the product's picture."""
        return f"catalog/img/{self.image}.svg"

    @property
    def in_stock(self) -> bool:
        """Whether at least one unit can be ordered."""
        return self.stock > 0
