"""A customer told that their order was cancelled is not told afterwards that it ships."""

import uuid

import pytest
from django.core import mail

from consumers.notifications.handlers import service
from consumers.notifications.models import Notification
from outbox.consumer.testing import handle, received_event

pytestmark = pytest.mark.django_db(databases=["default", "notifications"])

ORDER_ID = 52
EMAIL = "dwight@example.com"


def cancelled():
    customer = {"id": 3, "email": EMAIL, "name": "Dwight"}
    payload = {"order_id": ORDER_ID, "customer": customer, "previous_status": "paid"}
    payload |= {"reason": "Changed my mind.", "total": "20.00", "lines": []}
    return received_event(
        "orders.order.cancelled", {**payload, "cancelled_at": "2026-11-27T03:00:00+00:00"}
    )


def shipping_step(step: str):
    """``shipping.shipment.dispatched`` or ``...delivered`` of the order."""
    parcel = {"order_id": ORDER_ID, "tracking_number": str(uuid.uuid4()), "carrier": "USPS"}
    at = {f"{step}_at": "2026-11-27T03:00:01+00:00"}
    return received_event(f"shipping.shipment.{step}", {**parcel, "customer_email": EMAIL, **at})


def _kinds() -> list[str]:
    return list(Notification.objects.order_by("id").values_list("kind", flat=True))


def test_no_shipping_mail_after_the_cancellation_mail():
    # given the customer was told the order is cancelled
    handle(service, cancelled())
    # when shipping reports a parcel that had left before the cancellation reached it
    handle(service, shipping_step("dispatched"), shipping_step("delivered"))
    # then no "on its way" or "delivered" mail follows
    assert _kinds() == ["orders.order.cancelled"]
    assert [message.subject for message in mail.outbox] == [f"Order #{ORDER_ID} was cancelled"]


def test_a_shipping_mail_sent_before_the_cancellation_stays_sent():
    handle(service, shipping_step("dispatched"), cancelled())
    assert _kinds() == ["shipping.shipment.dispatched", "orders.order.cancelled"]
    assert len(mail.outbox) == 2
