"""JSON API of the signed-in customer's cart. Every endpoint needs a bearer token."""

from typing import Annotated, Any

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from apps.accounts.api import bearer_auth
from apps.carts.exceptions import CartError, ProductNotFound
from apps.carts.selectors import CartLine, CartView, cart_view
from apps.carts.services import cart_add_item, cart_remove_item, cart_set_quantity
from fitness.api_common import ErrorOut, Id, Money

router = Router(tags=["cart"], auth=bearer_auth)

# Strict: "2", 2.5 and true are refused rather than coerced. The range (1 to the stock) is the
# service's rule, so the API reports it with the same words as the web UI.
Quantity = Annotated[int, Field(strict=True, description="Whole number, 1 to the stock.")]


class CartItemOut(Schema):
    product_id: int
    sku: str
    name: str
    unit_price: Money
    quantity: int
    line_total: Money


class CartOut(Schema):
    items: list[CartItemOut]
    item_count: int
    subtotal: Money

    @staticmethod
    def resolve_items(obj: CartView) -> list[CartLine]:
        return obj.lines


class AddItemIn(Schema):
    product_id: Annotated[Id, Field(strict=True)]
    quantity: Quantity = 1


class SetQuantityIn(Schema):
    quantity: Quantity


@router.get("/cart", response={200: CartOut, 401: ErrorOut}, summary="The caller's cart")
def get_cart(request: HttpRequest) -> CartView:
    return cart_view(customer=request.auth)


@router.post(
    "/cart/items",
    response={201: CartOut, 401: ErrorOut, 422: ErrorOut},
    summary="Add a product to the cart",
    description=(
        "Adds `quantity` on top of what is already in the cart. An unknown `product_id` is bad "
        "input here: **422** with `field: product_id` (it is a 404 only where the product is "
        "part of the URL)."
    ),
)
def add_item(request: HttpRequest, payload: AddItemIn) -> Status[CartView]:
    try:
        cart_add_item(
            customer=request.auth, product_id=payload.product_id, quantity=payload.quantity
        )
    except ProductNotFound as exc:
        raise CartError(exc.field, exc.message) from exc
    return Status(201, cart_view(customer=request.auth))


@router.patch(
    "/cart/items/{product_id}",
    response={200: CartOut, 401: ErrorOut, 404: ErrorOut, 422: ErrorOut},
    summary="Change the quantity of a product in the cart",
    description="404 when the product is not in the caller's cart; remove it with DELETE.",
)
def set_quantity(request: HttpRequest, product_id: Id, payload: SetQuantityIn) -> CartView:
    cart_set_quantity(customer=request.auth, product_id=product_id, quantity=payload.quantity)
    return cart_view(customer=request.auth)


@router.delete(
    "/cart/items/{product_id}",
    response={204: None, 401: ErrorOut, 404: ErrorOut, 422: ErrorOut},
    summary="Remove a product from the cart",
)
def remove_item(request: HttpRequest, product_id: Id) -> Status[Any]:
    cart_remove_item(customer=request.auth, product_id=product_id)
    return Status(204, None)
