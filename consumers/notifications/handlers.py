"""Reactions of the notifications service: one e-mail per step of the order's saga."""

from consumers.notifications.messages import MESSAGES
from consumers.notifications.services import notification_send, recipient_remember
from outbox.consumer.events import ReceivedEvent
from outbox.consumer.service import ConsumerService

service = ConsumerService("notifications", database="notifications")


@service.handles("orders.order.placed", version=1)
def confirm_order(event: ReceivedEvent) -> None:
    """An order was placed: remember its customer and confirm the order by e-mail."""
    customer = event.payload["customer"]
    recipient_remember(
        order_id=event.payload["order_id"], email=customer["email"], name=customer["name"]
    )
    notification_send(event_type=event.type, event_id=str(event.id), payload=event.payload)


def _email_customer(event: ReceivedEvent) -> None:
    """A step of the saga happened: tell the customer."""
    notification_send(event_type=event.type, event_id=str(event.id), payload=event.payload)


for _event_type in MESSAGES:
    if _event_type != "orders.order.placed":
        service.handles(_event_type, version=1)(_email_customer)
