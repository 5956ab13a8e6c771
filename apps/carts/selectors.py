"""Read-side queries of carts."""

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Sum

from apps.carts.models import CartItem


@dataclass(frozen=True)
class CartLine:
    """One line of a cart as shown to the customer."""

    product_id: int
    sku: str
    name: str
    image_path: str
    unit_price: Decimal
    quantity: int
    stock: int

    @property
    def line_total(self) -> Decimal:
        """Unit price times quantity."""
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class CartView:
    """A customer's cart with its lines and totals."""

    lines: list[CartLine]

    @property
    def item_count(self) -> int:
        """Number of units across all lines."""
        return sum(line.quantity for line in self.lines)

    @property
    def subtotal(self) -> Decimal:
        """Sum of the line totals, before delivery."""
        return sum((line.line_total for line in self.lines), Decimal("0.00"))

    @property
    def is_empty(self) -> bool:
        """Whether the cart has no lines."""
        return not self.lines


def cart_view(*, customer: AbstractBaseUser) -> CartView:
    """The customer's cart with current prices (an absent cart reads as empty)."""
    items = CartItem.objects.filter(cart__customer=customer).select_related("product")
    return CartView(
        lines=[
            CartLine(
                product_id=item.product_id,
                sku=item.product.sku,
                name=item.product.name,
                image_path=item.product.image_path,
                unit_price=item.product.price,
                quantity=item.quantity,
                stock=item.product.stock,
            )
            for item in items
        ]
    )


def cart_item_count(*, customer: AbstractBaseUser) -> int:
    """Units in the customer's cart, for the page header."""
    total = CartItem.objects.filter(cart__customer=customer).aggregate(n=Sum("quantity"))["n"]
    return int(total or 0)
