"""Reactions of the payments service to other services' events."""

from consumers.payments.services import (
    payment_charge_for_order,
    payment_refund_for_cancelled_order,
)
from outbox.consumer.events import ReceivedEvent
from outbox.consumer.service import ConsumerService

service = ConsumerService("payments", database="payments")


@service.handles("orders.order.placed", version=1)
def charge_for_order(event: ReceivedEvent) -> None:
    """An order was placed: charge its card (authorized or declined)."""
    payment_charge_for_order(
        order=event.payload, correlation_id=event.correlation_id, causation_id=str(event.id)
    )


@service.handles("orders.order.cancelled", version=1)
def refund_cancelled_order(event: ReceivedEvent) -> None:
    """An order was cancelled: refund it if it was charged, and never charge it later."""
    payment_refund_for_cancelled_order(
        order_id=event.payload["order_id"],
        reason=event.payload["reason"],
        causation_id=str(event.id),
    )
