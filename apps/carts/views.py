"""Web views of the cart: show it, add a product, change a quantity, remove a line.

Carts belong to signed-in customers, so an anonymous visitor who adds a product is sent to the
login page and comes back to the page they were on.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST, require_safe

from apps.carts import services
from apps.carts.exceptions import CartError
from apps.carts.forms import AddToCartForm, QuantityForm
from apps.carts.selectors import cart_view
from apps.catalog.selectors import product_get

View = Callable[..., HttpResponse]


def _login_required_back_to_cart(view: View) -> View:
    """Like ``login_required`` for POST-only views: after logging in, land on the cart page
    (coming back to a POST-only URL with a GET would only answer 405)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(reverse("carts:cart_detail"))
        return view(request, *args, **kwargs)

    return wrapper


def _safe_next(request: HttpRequest, fallback: str) -> str:
    """The posted ``next`` URL if it points at this site, else ``fallback``."""
    target = request.POST.get("next", "")
    allowed = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if target and allowed else fallback


def _render_cart(
    request: HttpRequest, *, line_errors: dict[int, str] | None = None, status: int = 200
) -> HttpResponse:
    """The cart page; ``line_errors`` are shown next to their line (or on top if it is gone)."""
    cart = cart_view(customer=request.user)
    in_cart = {line.product_id for line in cart.lines}
    for product_id, error in (line_errors or {}).items():
        if product_id not in in_cart:
            messages.error(request, error)
    context = {"cart": cart, "line_errors": line_errors or {}}
    return render(request, "carts/cart_detail.html", context, status=status)


@require_safe
@login_required
def cart_detail(request: HttpRequest) -> HttpResponse:
    """The signed-in customer's cart with its lines and subtotal."""
    return _render_cart(request)


@require_POST
def cart_add_item(request: HttpRequest) -> HttpResponse:
    """Add a product to the cart and go back to the page the customer was on."""
    back = _safe_next(request, fallback=reverse("catalog:product_list"))
    if not request.user.is_authenticated:
        messages.info(request, "Please log in to add products to your cart.")
        return redirect_to_login(back)
    form = AddToCartForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a product and a whole-number quantity.")
        return redirect(back)
    try:
        item = services.cart_add_item(
            customer=request.user,
            product_id=form.cleaned_data["product_id"],
            quantity=form.cleaned_data["quantity"],
        )
    except CartError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    quantity = form.cleaned_data["quantity"]
    what = item.product.name if quantity == 1 else f"{quantity} x {item.product.name}"
    messages.success(request, f"Added {what} to your cart.")
    return redirect(back)


@require_POST
@_login_required_back_to_cart
def cart_update_item(request: HttpRequest, product_id: int) -> HttpResponse:
    """Set the quantity of a cart line; a refused quantity is shown next to the line."""
    form = QuantityForm(request.POST)
    if not form.is_valid():
        return _render_cart(
            request, line_errors={product_id: form.errors["quantity"][0]}, status=400
        )
    try:
        item = services.cart_set_quantity(
            customer=request.user, product_id=product_id, quantity=form.cleaned_data["quantity"]
        )
    except CartError as exc:
        return _render_cart(request, line_errors={product_id: exc.message}, status=400)
    messages.success(request, f"{item.product.name}: quantity is now {item.quantity}.")
    return redirect("carts:cart_detail")


@require_POST
@_login_required_back_to_cart
def cart_remove_item(request: HttpRequest, product_id: int) -> HttpResponse:
    """Remove a line from the cart."""
    product = product_get(product_id=product_id)
    try:
        services.cart_remove_item(customer=request.user, product_id=product_id)
    except CartError as exc:
        messages.error(request, exc.message)
    else:
        name = product.name if product else "the product"
        messages.success(request, f"Removed {name} from your cart.")
    return redirect("carts:cart_detail")
