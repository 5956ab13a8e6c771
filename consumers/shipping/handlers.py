"""Reactions of the shipping service to other services' events."""

from consumers.shipping.services import cancellation_record, shipment_dispatch
from outbox.consumer.events import ReceivedEvent
from outbox.consumer.service import ConsumerService

service = ConsumerService("shipping", database="shipping")


@service.handles("payments.payment.authorized", version=1)
def ship_paid_order(event: ReceivedEvent) -> None:
    """A payment was authorized: dispatch the order's parcel, unless the order was cancelled."""
    shipment_dispatch(
        payment=event.payload, correlation_id=event.correlation_id, causation_id=str(event.id)
    )


@service.handles("orders.order.cancelled", version=1)
def hold_cancelled_order(event: ReceivedEvent) -> None:
    """An order was cancelled: never dispatch it (its authorization may still be on the way)."""
    cancellation_record(order_id=event.payload["order_id"], reason=event.payload["reason"])
