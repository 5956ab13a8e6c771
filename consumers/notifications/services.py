"""Write-side services of the notifications service.

The e-mail is sent inside the consumer's transaction, after the ``Notification`` row (unique per
order and step) is written: a redelivered event finds the row and sends nothing. If the commit
itself fails after the mail went out, the retry sends it again — e-mail is at-least-once by
nature (no mail server takes part in our transaction); the row makes it once in every other case.
Both copies then carry the same ``Message-ID`` (made from the event id), so mail servers and
clients that de-duplicate by it show the customer one mail (``make chaos`` counts the ids).
"""

import logging
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction

from consumers.notifications.messages import message_for
from consumers.notifications.models import Notification, Recipient
from outbox.consumer.locking import lock_for_transaction
from outbox.exceptions import RetryLater

logger = logging.getLogger(__name__)

DATABASE = "notifications"
MESSAGE_ID_DOMAIN = "notifications.acme-fitness.example"
ORDER_CANCELLED = "orders.order.cancelled"
PAYMENT_AUTHORIZED = "payments.payment.authorized"
PAYMENT_REFUNDED = "payments.payment.refunded"
SHIPMENT_DISPATCHED = "shipping.shipment.dispatched"
SHIPMENT_DELIVERED = "shipping.shipment.delivered"
# The customer reads the order's mails as one story: paid -> on its way -> delivered, or
# cancelled -> refunded. A mail whose news a mail already sent has overtaken is not sent (a retry
# or another producer's event can deliver it late): "on its way" after "delivered", "being
# packed" after "on its way", anything saying the order is coming after "cancelled" or
# "refunded" (shipping dispatches no cancelled order; a parcel that had left before the
# cancellation is an operator's matter, docs/consumers.md). The refund mail tells of the money.
STALE_AFTER: dict[str, frozenset[str]] = {
    PAYMENT_AUTHORIZED: frozenset(
        {SHIPMENT_DISPATCHED, SHIPMENT_DELIVERED, ORDER_CANCELLED, PAYMENT_REFUNDED}
    ),
    SHIPMENT_DISPATCHED: frozenset({SHIPMENT_DELIVERED, ORDER_CANCELLED, PAYMENT_REFUNDED}),
    SHIPMENT_DELIVERED: frozenset({ORDER_CANCELLED, PAYMENT_REFUNDED}),
}
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
    """Serialise the mails of one order until the transaction ends.

    They come from different producers (the monolith, payments, shipping), so the framework's
    per-aggregate lock (per producer) does not serialise them: a worker sending the shipping
    mail could miss the cancellation another worker is sending and has not committed yet, or
    check before it and send after it. A transaction-scoped advisory lock on the order, taken
    in the consumer's transaction (with the inbox entry) before the check, closes that gap: one
    mail is sent and committed before the next is considered (a hash collision only makes two
    orders wait for each other). Left open: a mail whose commit fails after it went out leaves
    no row, so a mail it makes stale may follow it before its retry sends it again.
    """
    lock_for_transaction(namespace=ORDER_LOCK_NAMESPACE, key=str(order_id), using=DATABASE)


def _overtaken_by(event_type: str, order_id: int) -> str | None:
    """The kind of a mail already sent that makes this one stale (``STALE_AFTER``), if any."""
    later = STALE_AFTER.get(event_type)
    if not later:
        return None
    sent = Notification.objects.using(DATABASE).filter(order_id=order_id, kind__in=later)
    return sent.values_list("kind", flat=True).first()


def notification_send(*, event_type: str, event_id: str, payload: dict[str, Any]) -> bool:
    """E-mail the customer about one step of their order; ``False`` if it was already sent, or
    if a mail already sent overtook it (``STALE_AFTER``): then nothing is sent, and the event
    counts as handled (its inbox row commits; no retry). Runs inside the consumer's transaction.
    """
    order_id = payload["order_id"]
    _lock_order(order_id)
    overtaken_by = _overtaken_by(event_type, order_id)
    if overtaken_by is not None:
        logger.info(
            "notifications: no %s mail for order %s, the %s mail went out before it",
            event_type,
            order_id,
            overtaken_by,
        )
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
