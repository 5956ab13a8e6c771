"""Factories for tests: small functions that create valid objects with overridable fields."""

import itertools
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from apps.carts.services import cart_add_item
from apps.catalog.models import Product
from apps.orders.models import Order
from apps.orders.services import CardInput, ShippingAddress, order_place

_counter = itertools.count(1)
TEST_PASSWORD = "correct-horse-battery-staple"
GOOD_CARD = {"number": "4222222222222", "exp_month": 12, "exp_year": 2099, "cvv": "123"}
DECLINED_CARD = {"number": "4000000000000002", "exp_month": 12, "exp_year": 2099, "cvv": "123"}
ADDRESS = {
    "name": "Walter White",
    "street": "308 Negra Arroyo Lane",
    "city": "Albuquerque",
    "zip": "87104",
    "country": "US",
}


def make_customer(**fields: Any) -> AbstractBaseUser:
    """A customer with a unique username and the test password."""
    n = next(_counter)
    username = fields.pop("username", f"customer{n}")
    email = fields.pop("email", f"{username}@example.com")
    password = fields.pop("password", TEST_PASSWORD)
    return get_user_model().objects.create_user(
        username=username, email=email, password=password, **fields
    )


def make_product(**fields: Any) -> Product:
    """A product with a unique SKU, priced 10.00 with 10 in stock unless told otherwise."""
    n = next(_counter)
    defaults: dict[str, Any] = {
        "sku": f"TEST-{n}",
        "name": f"Test product {n}",
        "description": "A product made by a test.",
        "price": Decimal("10.00"),
        "image": "yogamat",
        "tags": ["test"],
        "stock": 10,
    }
    defaults.update(fields)
    return Product.objects.create(**defaults)


def place_order_for(
    customer: AbstractBaseUser,
    product: Product,
    *,
    quantity: int = 1,
    card: dict = GOOD_CARD,
    delivery: str = "standard",
) -> Order:
    """``customer`` puts ``quantity`` of ``product`` in the cart and checks out with ``card``."""
    cart_add_item(customer=customer, product_id=product.pk, quantity=quantity)
    return order_place(
        customer=customer,
        address=ShippingAddress(**ADDRESS),
        delivery=delivery,
        card=CardInput(**card),
    )
