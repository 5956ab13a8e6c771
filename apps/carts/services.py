"""Write-side services of carts. Every function validates first and changes nothing on error."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from apps.carts.exceptions import CartError, ItemNotInCart, ProductNotFound
from apps.carts.models import Cart, CartItem
from apps.catalog.models import Product

MAX_QUANTITY_PER_LINE = 99


def cart_get_or_create(*, customer: AbstractBaseUser) -> Cart:
    """The customer's cart, created empty on first use."""
    cart, _ = Cart.objects.get_or_create(customer=customer)
    return cart


def _validate_quantity(*, product: Product, quantity: int) -> None:
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
        raise CartError("quantity", "Quantity must be a whole number of at least 1.")
    if quantity > MAX_QUANTITY_PER_LINE:
        raise CartError("quantity", f"At most {MAX_QUANTITY_PER_LINE} of one product per order.")
    if quantity > product.stock:
        raise CartError("quantity", f"Only {product.stock} of {product.name} left in stock.")


def _product(product_id: int) -> Product:
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        raise ProductNotFound("product_id", f"There is no product with id {product_id}.")
    return product


@transaction.atomic
def cart_add_item(*, customer: AbstractBaseUser, product_id: int, quantity: int = 1) -> CartItem:
    """Add ``quantity`` of a product to the cart (on top of what is there already).

    Raises :class:`CartError` (field ``quantity``) when the new total is not between 1 and the
    stock, and :class:`ProductNotFound` for an unknown product.
    """
    product = _product(product_id)
    cart = cart_get_or_create(customer=customer)
    item = CartItem.objects.select_for_update().filter(cart=cart, product=product).first()
    current = item.quantity if item else 0
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
        raise CartError("quantity", "Quantity must be a whole number of at least 1.")
    _validate_quantity(product=product, quantity=current + quantity)
    if item is None:
        return CartItem.objects.create(cart=cart, product=product, quantity=quantity)
    item.quantity = current + quantity
    item.save(update_fields=["quantity"])
    return item


@transaction.atomic
def cart_set_quantity(*, customer: AbstractBaseUser, product_id: int, quantity: int) -> CartItem:
    """Set the quantity of a product already in the cart (1 to the stock; use remove for 0)."""
    product = _product(product_id)
    cart = cart_get_or_create(customer=customer)
    item = CartItem.objects.select_for_update().filter(cart=cart, product=product).first()
    if item is None:
        raise ItemNotInCart("product_id", f"{product.name} is not in your cart.")
    _validate_quantity(product=product, quantity=quantity)
    item.quantity = quantity
    item.save(update_fields=["quantity"])
    return item


def cart_remove_item(*, customer: AbstractBaseUser, product_id: int) -> None:
    """Remove a product from the cart; raises :class:`ItemNotInCart` if it was not there."""
    deleted, _ = CartItem.objects.filter(cart__customer=customer, product_id=product_id).delete()
    if not deleted:
        raise ItemNotInCart("product_id", f"Product {product_id} is not in your cart.")
