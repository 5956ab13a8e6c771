"""Write-side services of the notifications service.

The e-mail is sent inside the consumer's transaction, after the ``Notification`` row (unique per
order and step) is written: a redelivered event finds the row and sends nothing. If the commit
itself fails after the mail went out, the retry sends it again — e-mail is at-least-once by
nature (no mail server takes part in our transaction); the row makes it once in every other case.
Both copies then carry the same ``Message-ID`` (made from the event id), so mail servers and
clients that de-duplicate by it show the customer one mail (``make chaos`` counts the ids).
"""

from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, connections, transaction

from consumers.notifications.messages import message_for
from consumers.notifications.models import Notification, Recipient
from outbox.exceptions import RetryLater

DATABASE = "notifications"
MESSAGE_ID_DOMAIN = "notifications.acme-fitness.example"
ORDER_CANCELLED = "orders.order.cancelled"
# Mails that would tell the customer of a cancelled order that it is coming. Shipping dispatches
# no cancelled order; a parcel that had left before the cancellation is an operator's matter
# (docs/consumers.md), and a "your order is on its way" after "your order was cancelled" would
# only confuse the customer.
NOT_AFTER_CANCELLATION = frozenset({"shipping.shipment.dispatched", "shipping.shipment.delivered"})
# Advisory locks in the two-key form (classid, objid); classid marks them as notifications' ("no").
ORDER_LOCK_NAMESPACE = 0x6E6F


def recipient_remember(*, order_id: int, email: str, name: str) -> Recipient:
    """Store whom to write to about an order (from ``orders.order.placed``)."""
    recipient, _ = Recipient.objects.using(DATABASE).get_or_create(
        order_id=order_id, defaults={"email": email, "name": name}
    )
    return recipient


def _address(order_id: int, payload: dict[str, Any]) -> str:
    email = payload.get("customer_email") or payload.get("customer", {}).get("email")
    if email:
        return email
    recipient = Recipient.objects.using(DATABASE).filter(order_id=order_id).first()
    if recipient is None:
        # The order's placed event has not been handled yet: wait for it rather than lose a mail.
        raise RetryLater(f"no recipient known yet for order {order_id}")
    return recipient.email


def _lock_order(order_id: int) -> None:
    """Serialise the cancellation mail and the shipping mails of one order until the
    transaction ends.

    They come from different producers (the monolith, shipping), so the framework's
    per-aggregate lock (per producer) does not serialise them: a worker sending the shipping
    mail could miss the cancellation another worker is sending and has not committed yet, or
    check before it and send after it. A transaction-scoped advisory lock on the order, taken
    in the consumer's transaction (with the inbox entry) before the check, closes that gap: one
    of the two mails is sent and committed before the other is considered (a hash collision
    only makes two orders wait for each other). Left open: a cancellation mail whose commit
    fails after it went out leaves no row, so a shipping mail may follow it before its retry
    sends it again.
    """
    connection = connections[DATABASE]
    # Outside a transaction the lock would be released at once, silently: no serialisation.
    if not connection.in_atomic_block:
        raise RuntimeError("notification_send must run inside the consumer's transaction")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [ORDER_LOCK_NAMESPACE, str(order_id)]
        )


def _cancellation_sent(order_id: int) -> bool:
    notifications = Notification.objects.using(DATABASE)
    return notifications.filter(order_id=order_id, kind=ORDER_CANCELLED).exists()


def notification_send(*, event_type: str, event_id: str, payload: dict[str, Any]) -> bool:
    """E-mail the customer about one step of their order; ``False`` if it was already sent, or
    if it is a shipping mail for an order whose cancellation the customer was told about.
    Runs inside the consumer's transaction."""
    order_id = payload["order_id"]
    if event_type == ORDER_CANCELLED or event_type in NOT_AFTER_CANCELLATION:
        _lock_order(order_id)
    if event_type in NOT_AFTER_CANCELLATION and _cancellation_sent(order_id):
        return False
    recipient = _address(order_id, payload)
    subject, body = message_for(event_type, payload)
    try:
        with transaction.atomic(using=DATABASE):
            Notification.objects.using(DATABASE).create(
                order_id=order_id,
                kind=event_type,
                recipient=recipient,
                subject=subject,
                body=body,
                event_id=event_id,
            )
    except IntegrityError:
        return False
    EmailMessage(
        subject,
        body,
        settings.DEFAULT_FROM_EMAIL,
        [recipient],
        headers={"Message-ID": message_id_for(event_id)},
    ).send()
    return True


def message_id_for(event_id: str) -> str:
    """The mail's ``Message-ID``: the same for every copy of the mail about one event."""
    return f"<notification.{event_id}@{MESSAGE_ID_DOMAIN}>"
