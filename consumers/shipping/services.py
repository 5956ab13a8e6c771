"""Write-side services of the shipping service.

Delivery is simulated: a shipment becomes ``delivered`` once ``SHIPPING_DELIVERY_DELAY_SECONDS``
have passed. With a delay of 0 (the tests) it is delivered in the same transaction as its
dispatch; otherwise ``python manage.py deliver_shipments --loop`` (a small clock process in the
Procfile) delivers what is due. The due time is a column, not a broker timer, so nothing waits
in a queue (ETA tasks block quorum-queue workers) and a crash loses no delivery.
"""

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from consumers.shipping.events import SHIPMENT_DELIVERED, SHIPMENT_DISPATCHED
from consumers.shipping.models import Shipment
from outbox.recording import record_event

DATABASE = "shipping"
CARRIERS = {"standard": "USPS", "express": "UPS"}


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
    shipped. With no delivery delay the parcel is delivered at once."""
    order_id = payment["order_id"]
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
