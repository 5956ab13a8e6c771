"""Reactions of the shipping service to other services' events."""

from consumers.shipping.services import shipment_dispatch
from outbox.consumer.events import ReceivedEvent
from outbox.consumer.service import ConsumerService

service = ConsumerService("shipping", database="shipping")


@service.handles("payments.payment.authorized", version=1)
def ship_paid_order(event: ReceivedEvent) -> None:
    """A payment was authorized: dispatch the order's parcel."""
    shipment_dispatch(
        payment=event.payload, correlation_id=event.correlation_id, causation_id=str(event.id)
    )
