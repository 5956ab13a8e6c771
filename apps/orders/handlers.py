"""The monolith's reactions to other services' events: the order follows its saga.

Registered as the consumer service ``orders`` (queue ``orders.events``), run by its own worker
like any split-out service. Every handler is idempotent: the inbox drops duplicates, and an
event that arrives before its predecessor waits (``RetryLater``) instead of being applied.
"""

from apps.orders.models import OrderStatus
from apps.orders.services import order_advance, order_note
from outbox.consumer.events import ReceivedEvent
from outbox.consumer.service import ConsumerService

service = ConsumerService("orders", database="default")


@service.handles("payments.payment.authorized", version=1)
def mark_paid(event: ReceivedEvent) -> None:
    """The card was charged: the order is paid."""
    p = event.payload
    order_advance(
        order_id=p["order_id"],
        target=OrderStatus.PAID,
        waits_for=OrderStatus.PENDING_PAYMENT,
        kind=event.type,
        message=f"Payment of {p['amount']} {p['currency']} authorized ({p['card_brand']} "
        f"ending in {p['card_last4']}).",
        source="payments",
        event_id=str(event.id),
    )


@service.handles("payments.payment.declined", version=1)
def mark_payment_failed(event: ReceivedEvent) -> None:
    """The card was declined: the order failed and its stock goes back on the shelf."""
    order_advance(
        order_id=event.payload["order_id"],
        target=OrderStatus.PAYMENT_FAILED,
        waits_for=OrderStatus.PENDING_PAYMENT,
        kind=event.type,
        message=f"Payment declined: {event.payload['message']}",
        source="payments",
        event_id=str(event.id),
    )


@service.handles("shipping.shipment.dispatched", version=1)
def mark_shipped(event: ReceivedEvent) -> None:
    """The parcel left: the order is shipped (waits until the order is paid)."""
    p = event.payload
    order_advance(
        order_id=p["order_id"],
        target=OrderStatus.SHIPPED,
        waits_for=OrderStatus.PAID,
        kind=event.type,
        message=f"Shipped with {p['carrier']}, tracking number {p['tracking_number']}.",
        source="shipping",
        event_id=str(event.id),
    )


@service.handles("shipping.shipment.delivered", version=1)
def mark_delivered(event: ReceivedEvent) -> None:
    """The parcel arrived: the order is delivered (waits until the order is shipped)."""
    p = event.payload
    order_advance(
        order_id=p["order_id"],
        target=OrderStatus.DELIVERED,
        waits_for=OrderStatus.SHIPPED,
        kind=event.type,
        message=f"Delivered by {p['carrier']}.",
        source="shipping",
        event_id=str(event.id),
    )


@service.handles("payments.payment.refunded", version=1)
def note_refund(event: ReceivedEvent) -> None:
    """A cancelled order's payment was refunded: note it on the timeline."""
    p = event.payload
    order_note(
        order_id=p["order_id"],
        kind=event.type,
        message=f"Refunded {p['amount']} {p['currency']}.",
        source="payments",
        event_id=str(event.id),
    )
