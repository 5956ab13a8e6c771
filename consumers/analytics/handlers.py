"""The analytics service subscribes to the saga's events; it publishes none.

Added without any change to the producers: the queue ``analytics.events`` is bound to these
types by ``setup_broker``, and ``rebuild_projection analytics`` fills it from the retained events.
"""

from consumers.analytics import services
from outbox.consumer.events import ReceivedEvent
from outbox.consumer.service import ConsumerService

service = ConsumerService("analytics", database="analytics")
service.on_reset(services.analytics_reset)


@service.handles("orders.order.placed", version=1)
def order_placed(event: ReceivedEvent) -> None:
    """An order was placed: its lines, total and checkout time."""
    services.analytics_order_placed(
        order_id=event.payload["order_id"], at=event.time, payload=event.payload
    )


@service.handles("payments.payment.authorized", version=1)
def payment_authorized(event: ReceivedEvent) -> None:
    """An order was paid."""
    services.analytics_payment_authorized(
        order_id=event.payload["order_id"], at=event.time, amount=event.payload["amount"]
    )


@service.handles("payments.payment.declined", version=1)
def payment_declined(event: ReceivedEvent) -> None:
    """An order's card was declined."""
    services.analytics_payment_declined(
        order_id=event.payload["order_id"], at=event.time, reason=event.payload["reason"]
    )


@service.handles("shipping.shipment.dispatched", version=1)
def shipment_dispatched(event: ReceivedEvent) -> None:
    """An order was shipped."""
    services.analytics_shipment_dispatched(order_id=event.payload["order_id"], at=event.time)


@service.handles("shipping.shipment.delivered", version=1)
def shipment_delivered(event: ReceivedEvent) -> None:
    """An order was delivered."""
    services.analytics_shipment_delivered(order_id=event.payload["order_id"], at=event.time)


@service.handles("orders.order.cancelled", version=1)
def order_cancelled(event: ReceivedEvent) -> None:
    """An order was cancelled."""
    services.analytics_order_cancelled(order_id=event.payload["order_id"], at=event.time)


@service.handles("payments.payment.refunded", version=1)
def payment_refunded(event: ReceivedEvent) -> None:
    """A cancelled order's payment was refunded."""
    services.analytics_payment_refunded(
        order_id=event.payload["order_id"], at=event.time, amount=event.payload["amount"]
    )
