"""JSON API of orders: check out the cart, list and read one's orders, cancel one.

Another customer's order answers 404 exactly like a missing one, so ids reveal nothing.
"""

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Router, Status

from apps.accounts.api import bearer_auth
from apps.orders.exceptions import OrderNotFound
from apps.orders.models import Order
from apps.orders.schemas import OrderIn, OrderOut
from apps.orders.selectors import order_get_for_customer, order_list_for_customer
from apps.orders.services import CardInput, ShippingAddress, order_cancel, order_place
from fitness.api_common import ErrorOut, Id

router = Router(tags=["orders"], auth=bearer_auth)


def _order(request: HttpRequest, order_id: int) -> Order:
    order = order_get_for_customer(customer=request.auth, order_id=order_id)
    if order is None:
        raise OrderNotFound(order_id)
    return order


@router.post(
    "/orders",
    response={201: OrderOut, 401: ErrorOut, 422: ErrorOut},
    summary="Check out the cart",
    description=(
        "Validates address, delivery and card, then in one transaction reserves the stock, "
        "creates the order in `pending_payment`, empties the cart and records "
        "`orders.order.placed`. 422 lists every bad field (`address.city`, `card.number`, "
        "`card.cvv`...) or `cart` when it is empty or short of stock; nothing is changed then. "
        "Card `4000000000000002` is accepted but its payment will be declined."
    ),
)
def place_order(request: HttpRequest, payload: OrderIn) -> Status[Order]:
    order = order_place(
        customer=request.auth,
        address=ShippingAddress(**payload.address.model_dump()),
        delivery=payload.delivery.value,
        card=CardInput(**payload.card.model_dump()),
    )
    return Status(201, _order(request, order.pk))


@router.get(
    "/orders",
    response={200: list[OrderOut], 401: ErrorOut},
    summary="The caller's orders, newest first",
)
def list_orders(request: HttpRequest) -> QuerySet[Order]:
    return order_list_for_customer(customer=request.auth).prefetch_related("timeline")


@router.get(
    "/orders/{order_id}",
    response={200: OrderOut, 401: ErrorOut, 404: ErrorOut, 422: ErrorOut},
    summary="One of the caller's orders, with its timeline",
)
def get_order(request: HttpRequest, order_id: Id) -> Order:
    return _order(request, order_id)


@router.post(
    "/orders/{order_id}/cancel",
    response={200: OrderOut, 401: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut},
    summary="Cancel an order that is pending payment or paid",
    description="Releases the stock (a paid order is refunded). 409 once it has shipped.",
)
def cancel_order(request: HttpRequest, order_id: Id) -> Order:
    order_cancel(customer=request.auth, order_id=order_id)
    return _order(request, order_id)
