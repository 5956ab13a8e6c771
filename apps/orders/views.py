"""Web views of orders: checkout, "my orders", an order's page and cancelling it.

A customer only ever sees their own orders: another customer's order answers 404, the same as
an order that does not exist.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from apps.carts.selectors import CartView, cart_view
from apps.orders import selectors, services
from apps.orders.exceptions import OrderInvalid, OrderNotCancellable, OrderNotFound
from apps.orders.forms import CheckoutForm
from apps.orders.models import DeliveryMethod, Order
from apps.orders.state import CANCELLABLE, FINAL

CARD_BRAND_LABELS = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "amex": "American Express",
    "discover": "Discover",
}


def _render_checkout(
    request: HttpRequest, *, form: CheckoutForm, cart: CartView, status: int = 200
) -> HttpResponse:
    context = {"form": form, "cart": cart}
    return render(request, "orders/checkout.html", context, status=status)


def _place_order(request: HttpRequest, form: CheckoutForm) -> Order:
    data = form.cleaned_data
    return services.order_place(
        customer=request.user,
        address=services.ShippingAddress(**{f: data[f] for f in CheckoutForm.ADDRESS_FIELDS}),
        delivery=data["delivery"],
        card=services.CardInput(**{f: data[f] for f in CheckoutForm.CARD_FIELDS}),
    )


@require_http_methods(["GET", "POST"])
@login_required
def checkout(request: HttpRequest) -> HttpResponse:
    """Address, delivery and card; on success the order page, else the form with its errors."""
    cart = cart_view(customer=request.user)
    if request.method == "GET":
        if cart.is_empty:
            messages.info(request, "Your cart is empty: add a product before checking out.")
            return redirect("carts:cart_detail")
        initial = {"delivery": DeliveryMethod.STANDARD, "name": request.user.get_full_name()}
        return _render_checkout(
            request, form=CheckoutForm(initial=initial, subtotal=cart.subtotal), cart=cart
        )
    form = CheckoutForm(request.POST, subtotal=cart.subtotal)
    if not form.is_valid():
        return _render_checkout(request, form=form, cart=cart, status=400)
    try:
        order = _place_order(request, form)
    except OrderInvalid as exc:
        form.add_service_errors(exc.errors)
        return _render_checkout(request, form=form, cart=cart, status=400)
    messages.success(request, f"Thank you! Your order #{order.pk} is placed.")
    return redirect("orders:order_detail", order_id=order.pk)


@require_safe
@login_required
def order_list(request: HttpRequest) -> HttpResponse:
    """The signed-in customer's orders, newest first."""
    orders = selectors.order_list_for_customer(customer=request.user)
    return render(request, "orders/order_list.html", {"orders": orders})


@require_safe
@login_required
def order_detail(request: HttpRequest, order_id: int) -> HttpResponse:
    """One of the customer's orders: status, lines, totals, address, card and timeline."""
    order = selectors.order_get_for_customer(customer=request.user, order_id=order_id)
    if order is None:
        raise Http404("No such order.")
    context = {
        "order": order,
        "card_brand": CARD_BRAND_LABELS.get(order.card_brand, order.card_brand.title()),
        "can_cancel": order.status in CANCELLABLE,
        "is_final": order.status in FINAL,
    }
    return render(request, "orders/order_detail.html", context)


@require_POST
@login_required
def order_cancel(request: HttpRequest, order_id: int) -> HttpResponse:
    """Cancel the order if its status still allows it, then show it again."""
    try:
        order = services.order_cancel(customer=request.user, order_id=order_id)
    except OrderNotFound as exc:
        raise Http404("No such order.") from exc
    except OrderNotCancellable as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Order #{order.pk} is cancelled.")
    return redirect("orders:order_detail", order_id=order_id)
