"""Write-side services of the shipping service.

Delivery is simulated: a shipment becomes ``delivered`` once ``SHIPPING_DELIVERY_DELAY_SECONDS``
have passed. With a delay of 0 (the tests) it is delivered in the same transaction as its
dispatch; otherwise ``python manage.py deliver_shipments --loop`` (a small clock process in the
Procfile) delivers what is due. The due time is a column, not a broker timer, so nothing waits
in a queue (ETA tasks block quorum-queue workers) and a crash loses no delivery.

A cancelled order is never dispatched: ``orders.order.cancelled`` is remembered
(:class:`CancelledOrder`) whether it arrives before or after the payment's authorization.
"""

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from consumers.shipping.events import SHIPMENT_DELIVERED, SHIPMENT_DISPATCHED
from consumers.shipping.models import CancelledOrder, Shipment
from outbox.consumer.locking import lock_for_transaction
from outbox.recording import record_event

logger = logging.getLogger(__name__)

DATABASE = "shipping"
CARRIERS = {"standard": "USPS", "express": "UPS"}
# Advisory locks in the two-key form (classid, objid); classid marks them as shipping's ("sh").
ORDER_LOCK_NAMESPACE = 0x7368


def _lock_order(order_id: int) -> None:
    """Serialise shipping's handlers of one order until the transaction ends.

    The authorization and the cancellation have different producers, so the framework's
    per-aggregate lock (per producer) does not serialise them: two workers could each miss the
    other's uncommitted row and dispatch a cancelled order. A transaction-scoped advisory lock
    on the order closes that gap (a hash collision only makes two orders wait for each other).
    """
    lock_for_transaction(namespace=ORDER_LOCK_NAMESPACE, key=str(order_id), using=DATABASE)


def _delivery_delay() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "SHIPPING_DELIVERY_DELAY_SECONDS", 0)))


def _payload(shipment: Shipment) -> dict[str, Any]:
    return {
        "order_id": shipment.order_id,
        "tracking_number": str(shipment.tracking_number),
        "carrier": shipment.carrier,
        "customer_email": shipment.customer_email,
    }


def shipment_dispatch(
    *, payment: dict[str, Any], correlation_id: str, causation_id: str
) -> Shipment | None:
    """Ship a paid order (the ``payments.payment.authorized`` payload); ``None`` if already
    shipped or if the order was cancelled. With no delivery delay the parcel is delivered at once.
    Runs inside the consumer's transaction."""
    order_id = payment["order_id"]
    _lock_order(order_id)
    if CancelledOrder.objects.using(DATABASE).filter(order_id=order_id).exists():
        logger.info("shipping: order %s was cancelled; not dispatched", order_id)
        return None
    if Shipment.objects.using(DATABASE).filter(order_id=order_id).exists():
        return None
    now = timezone.now()
    delivery = payment.get("delivery", "standard")
    shipment = Shipment.objects.using(DATABASE).create(
        order_id=order_id,
        status=Shipment.Status.DISPATCHED,
        tracking_number=uuid.uuid4(),
        carrier=CARRIERS.get(delivery, CARRIERS["standard"]),
        delivery_method=delivery,
        customer_email=payment.get("customer_email", ""),
        correlation_id=correlation_id,
        dispatched_at=now,
        deliver_after=now + _delivery_delay(),
    )
    record_event(
        SHIPMENT_DISPATCHED,
        aggregate_id=str(order_id),
        payload={**_payload(shipment), "dispatched_at": now.isoformat()},
        correlation_id=correlation_id,
        causation_id=causation_id,
        using=DATABASE,
    )
    if _delivery_delay() <= timedelta(0):
        _deliver(shipment, causation_id=causation_id)
    return shipment


def cancellation_record(*, order_id: int, reason: str) -> CancelledOrder:
    """Remember that an order was cancelled (``orders.order.cancelled``) so it is never
    dispatched. Runs inside the consumer's transaction, with the inbox entry.

    A parcel that already left stays with the carrier (we cannot call it back): the order is
    flagged ``parcel_already_dispatched`` and logged, for an operator to arrange its return.
    """
    _lock_order(order_id)
    dispatched = Shipment.objects.using(DATABASE).filter(order_id=order_id).exists()
    cancellation, created = CancelledOrder.objects.using(DATABASE).get_or_create(
        order_id=order_id,
        defaults={"reason": reason[:255], "parcel_already_dispatched": dispatched},
    )
    if created and dispatched:
        logger.warning(
            "shipping: order %s was cancelled after its parcel was dispatched; "
            "an operator must arrange its return",
            order_id,
        )
    return cancellation


def _deliver(shipment: Shipment, *, causation_id: str) -> None:
    shipment.status = Shipment.Status.DELIVERED
    shipment.delivered_at = timezone.now()
    shipment.save(update_fields=["status", "delivered_at"])
    record_event(
        SHIPMENT_DELIVERED,
        aggregate_id=str(shipment.order_id),
        payload={**_payload(shipment), "delivered_at": shipment.delivered_at.isoformat()},
        correlation_id=shipment.correlation_id,
        causation_id=causation_id,
        using=DATABASE,
    )


def shipment_deliver_due(*, now: datetime | None = None, limit: int = 100) -> int:
    """Deliver dispatched shipments whose time has come; return how many.

    Rows are claimed with ``SKIP LOCKED`` so two clock processes never deliver one twice.
    """
    now = now or timezone.now()
    with transaction.atomic(using=DATABASE):
        due = list(
            Shipment.objects.using(DATABASE)
            .select_for_update(skip_locked=True)
            .filter(status=Shipment.Status.DISPATCHED, deliver_after__lte=now)
            .order_by("deliver_after")[:limit]
        )
        for shipment in due:
            _deliver(shipment, causation_id="")
    return len(due)
