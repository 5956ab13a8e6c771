"""Write-side services of orders: checkout and cancellation.

Each runs in one database transaction that changes the order, the stock and the cart *and*
records the integration event in the outbox, so the event exists if and only if the change
was committed.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F

from apps.carts.models import CartItem
from apps.catalog.models import Product
from apps.orders.cards import CardInvalid, PaymentCard, card_validate
from apps.orders.delivery import delivery_cost
from apps.orders.events import ORDER_CANCELLED, ORDER_PLACED
from apps.orders.exceptions import OrderInvalid, OrderNotCancellable, OrderNotFound
from apps.orders.models import DeliveryMethod, Order, OrderLine, OrderStatus, OrderTimelineEntry
from apps.orders.payloads import order_cancelled_payload, order_placed_payload
from apps.orders.state import CANCELLABLE, can_transition, ensure_transition
from outbox.exceptions import RetryLater
from outbox.recording import record_event


@dataclass(frozen=True)
class ShippingAddress:
    """Where the parcel goes."""

    name: str
    street: str
    city: str
    zip: str
    country: str


@dataclass(frozen=True)
class CardInput:
    """A card as typed at checkout. Lives only for the request; never stored."""

    number: str
    exp_month: int
    exp_year: int
    cvv: str


# Longest value each address field may have (the columns of Order.ship_*).
# Longest value each free-text address field may have (the Order.ship_* columns).
_ADDRESS_MAX_LENGTHS = {"name": 120, "street": 200, "city": 100, "zip": 20}


def _address_errors(address: ShippingAddress) -> dict[str, str]:
    errors: dict[str, str] = {}
    for field, max_length in _ADDRESS_MAX_LENGTHS.items():
        value = str(getattr(address, field) or "").strip()
        if not value:
            errors[f"address.{field}"] = "This field is required."
        elif len(value) > max_length:
            errors[f"address.{field}"] = f"At most {max_length} characters."
    country = str(address.country or "").strip()
    if not country:
        errors["address.country"] = "This field is required."
    elif not (len(country) == 2 and country.isalpha()):
        errors["address.country"] = "Use a two-letter country code, e.g. US or DE."
    return errors


def _validate_checkout(*, address: ShippingAddress, delivery: str, card: CardInput) -> PaymentCard:
    """Check every field at once; raise :class:`OrderInvalid` listing all that are wrong."""
    errors = _address_errors(address)
    if delivery not in DeliveryMethod.values:
        errors["delivery"] = f"Choose one of: {', '.join(DeliveryMethod.values)}."
    payment_card = None
    try:
        payment_card = card_validate(
            number=card.number, exp_month=card.exp_month, exp_year=card.exp_year, cvv=card.cvv
        )
    except CardInvalid as exc:
        errors.update({f"card.{field}": reason for field, reason in exc.errors.items()})
    if errors or payment_card is None:
        raise OrderInvalid(errors)
    return payment_card


def _reserve_stock(items: list[CartItem]) -> None:
    """Take the cart's quantities out of stock, or raise if any product has too few left.

    Products are locked in id order so two checkouts never deadlock, and the locks make the
    stock check and the decrement one step: the last item cannot be sold twice.
    """
    product_ids = sorted(item.product_id for item in items)
    products = {
        p.pk: p
        for p in Product.objects.select_for_update().filter(pk__in=product_ids).order_by("pk")
    }
    shortages = [
        f"Only {products[item.product_id].stock} of {products[item.product_id].name} left."
        for item in items
        if item.quantity > products[item.product_id].stock
    ]
    if shortages:
        raise OrderInvalid({"cart": " ".join(shortages)})
    for item in items:
        Product.objects.filter(pk=item.product_id).update(stock=F("stock") - item.quantity)


def _release_stock(order: Order) -> None:
    for line in order.lines.all():
        Product.objects.filter(pk=line.product_id).update(stock=F("stock") + line.quantity)


def order_place(
    *, customer: AbstractBaseUser, address: ShippingAddress, delivery: str, card: CardInput
) -> Order:
    """Turn the customer's cart into an order: reserve stock, empty the cart, record
    ``orders.order.placed``. Raises :class:`OrderInvalid` (nothing changed) on bad input, an
    empty cart or too little stock."""
    payment_card = _validate_checkout(address=address, delivery=delivery, card=card)
    with transaction.atomic():
        items = list(
            # Lock the cart lines only; products are locked in _reserve_stock, in id order.
            CartItem.objects.select_for_update(of=("self",))
            .filter(cart__customer=customer)
            .select_related("product")
            .order_by("product_id")
        )
        if not items:
            raise OrderInvalid({"cart": "Your cart is empty."})
        _reserve_stock(items)
        subtotal = sum((item.product.price * item.quantity for item in items), Decimal("0.00"))
        shipping = delivery_cost(method=delivery, subtotal=subtotal)
        order = Order.objects.create(
            customer=customer,
            subtotal=subtotal,
            delivery_cost=shipping,
            total=subtotal + shipping,
            ship_name=address.name.strip(),
            ship_street=address.street.strip(),
            ship_city=address.city.strip(),
            ship_zip=address.zip.strip(),
            ship_country=address.country.strip().upper(),
            delivery_method=delivery,
            card_brand=payment_card.brand,
            card_last4=payment_card.last4,
            card_exp_month=payment_card.exp_month,
            card_exp_year=payment_card.exp_year,
            payment_token=payment_card.token,
        )
        OrderLine.objects.bulk_create(
            OrderLine(
                order=order,
                product=item.product,
                sku=item.product.sku,
                name=item.product.name,
                unit_price=item.product.price,
                quantity=item.quantity,
            )
            for item in items
        )
        CartItem.objects.filter(pk__in=[item.pk for item in items]).delete()
        event = record_event(
            ORDER_PLACED,
            aggregate_id=str(order.pk),
            payload=order_placed_payload(order),
            correlation_id=str(order.correlation_id),
        )
        OrderTimelineEntry.objects.create(
            order=order,
            kind=ORDER_PLACED.type,
            status=order.status,
            message=f"Order placed: {order.total} {order.currency}, awaiting payment.",
            event_id=event.event_id,
        )
    return order


def order_cancel(*, customer: AbstractBaseUser, order_id: int, reason: str = "") -> Order:
    """Cancel an order that is still pending payment or paid: release its stock and record
    ``orders.order.cancelled`` (the payments service refunds a paid order)."""
    reason = reason.strip() or "Cancelled by the customer."
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(pk=order_id, customer=customer).first()
        if order is None:
            raise OrderNotFound(order_id)
        if order.status not in CANCELLABLE:
            raise OrderNotCancellable(
                f"Order #{order.pk} is {order.get_status_display().lower()} and can no longer"
                " be cancelled."
            )
        previous = order.status
        ensure_transition(previous, OrderStatus.CANCELLED)
        order.status = OrderStatus.CANCELLED
        order.save(update_fields=["status", "updated_at"])
        _release_stock(order)
        event = record_event(
            ORDER_CANCELLED,
            aggregate_id=str(order.pk),
            payload=order_cancelled_payload(order, previous_status=previous, reason=reason),
            correlation_id=str(order.correlation_id),
        )
        OrderTimelineEntry.objects.create(
            order=order,
            kind=ORDER_CANCELLED.type,
            status=order.status,
            message=reason,
            event_id=event.event_id,
        )
    return order


# --- Reactions to the saga (called by apps/orders/handlers.py) ---------------------------------


def _timeline(order: Order, *, kind: str, message: str, source: str, event_id: str) -> None:
    OrderTimelineEntry.objects.create(
        order=order,
        kind=kind,
        status=order.status,
        message=message,
        source=source,
        event_id=event_id,
    )


def order_advance(
    *,
    order_id: int,
    target: str,
    waits_for: str,
    kind: str,
    message: str,
    source: str,
    event_id: str,
) -> Order:
    """Move an order to ``target`` because another service reported a step, and note it.

    Events may arrive out of order: if the order is still at ``waits_for``'s predecessor (e.g.
    ``shipped`` arrives while the order is not yet ``paid``), raise :class:`RetryLater` so the
    event waits for its predecessor. A cancelled order stays cancelled: the step is only noted.
    """
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(pk=order_id).first()
        if order is None:
            raise RetryLater(f"order {order_id} is not visible yet")
        if order.status == OrderStatus.CANCELLED:
            _timeline(
                order,
                kind=kind,
                message=f"{message} (after cancellation)",
                source=source,
                event_id=event_id,
            )
            return order
        if order.status != waits_for and not can_transition(order.status, target):
            if _is_before(order.status, waits_for):
                raise RetryLater(f"order {order_id} is {order.status}, waiting for {waits_for}")
            return order  # already past this step: nothing to do
        ensure_transition(order.status, target)
        order.status = target
        order.save(update_fields=["status", "updated_at"])
        if target == OrderStatus.PAYMENT_FAILED:
            _release_stock(order)
        _timeline(order, kind=kind, message=message, source=source, event_id=event_id)
    return order


_HAPPY_PATH = [
    OrderStatus.PENDING_PAYMENT,
    OrderStatus.PAID,
    OrderStatus.SHIPPED,
    OrderStatus.DELIVERED,
]


def _is_before(current: str, expected: str) -> bool:
    """Whether ``current`` comes before ``expected`` on the happy path."""
    if current not in _HAPPY_PATH or expected not in _HAPPY_PATH:
        return False
    return _HAPPY_PATH.index(current) < _HAPPY_PATH.index(expected)


def order_note(*, order_id: int, kind: str, message: str, source: str, event_id: str) -> None:
    """Add a timeline entry without a status change (e.g. a refund of a cancelled order)."""
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(pk=order_id).first()
        if order is None:
            raise RetryLater(f"order {order_id} is not visible yet")
        _timeline(order, kind=kind, message=message, source=source, event_id=event_id)
