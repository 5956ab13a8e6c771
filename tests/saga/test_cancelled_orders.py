"""A cancelled order is not shipped, whichever of the payment's authorization and the
cancellation reaches shipping first — with the real relay, RabbitMQ and worker processes."""

import pytest

from apps.orders.models import Order, OrderStatus
from apps.orders.services import order_cancel
from consumers.notifications.models import Notification
from consumers.payments.models import Payment
from consumers.shipping.models import CancelledOrder, Shipment
from outbox.consumer.models import InboxEntry
from outbox.models import OutboxMessage
from outbox.tests.helpers import wait_for
from tests.factories import GOOD_CARD
from tests.saga.support import order_status, place_order, timeline, wait_status

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def _wait_refunded(order: Order) -> None:
    wait_for(
        lambda: Payment.objects.filter(order_id=order.pk, status=Payment.Status.REFUNDED).exists(),
        30,
        f"order {order.pk} to be refunded",
    )


def _wait_timeline(order: Order, kind: str) -> None:
    wait_for(lambda: kind in timeline(order), 30, f"{kind} on order {order.pk}'s timeline")


def _mail_kinds(order: Order) -> list[str]:
    return list(Notification.objects.filter(order_id=order.pk).values_list("kind", flat=True))


def _shipping_mail_after_cancellation(order: Order) -> bool:
    kinds = _mail_kinds(order)
    after = kinds[kinds.index("orders.order.cancelled") + 1 :]
    return any(kind.startswith("shipping.") for kind in after)


def test_an_authorization_that_reaches_shipping_after_the_cancellation_ships_nothing(start_saga):
    # given shipping, notifications and the monolith's handlers running, payments lagging behind
    start_saga("shipping", "notifications", "orders")
    order = place_order(GOOD_CARD)
    # when the customer cancels, and shipping hears of it before any payment
    order_cancel(customer=order.customer, order_id=order.pk)
    wait_for(lambda: CancelledOrder.objects.filter(order_id=order.pk).exists(), 30, "the marker")
    # and payments catches up: it charges the order (its queue has the placed event first),
    # then refunds it
    start_saga("payments", relay_databases=())
    _wait_refunded(order)
    # then shipping handles the authorization and dispatches nothing
    wait_for(
        lambda: InboxEntry.objects.filter(
            service="shipping", event_type="payments.payment.authorized", subject=str(order.pk)
        ).exists(),
        30,
        "shipping to handle the authorization",
    )
    assert not Shipment.objects.filter(order_id=order.pk).exists()
    dispatched = OutboxMessage.objects.filter(
        type="shipping.shipment.dispatched", aggregate_id=str(order.pk)
    )
    assert not dispatched.exists()
    assert CancelledOrder.objects.get(order_id=order.pk).parcel_already_dispatched is False
    # and the order stays cancelled; its timeline notes the late payment and the refund
    _wait_timeline(order, "payments.payment.refunded")
    assert order_status(order) == OrderStatus.CANCELLED
    wait_for(lambda: "payments.payment.refunded" in _mail_kinds(order), 30, "the refund mail")
    assert not any(kind.startswith("shipping.") for kind in _mail_kinds(order))


def test_a_parcel_dispatched_before_the_cancellation_is_flagged_and_the_order_stays_cancelled(
    start_saga,
):
    # given a paid order whose parcel shipping dispatched (and, without delay, delivered) while
    # the monolith had not heard of it yet: its page still offers "cancel"
    _relay, _payments, orders = start_saga("payments", "orders")
    order = place_order(GOOD_CARD)
    wait_status(order, OrderStatus.PAID)
    orders.stop()
    start_saga("shipping", "notifications", relay_databases=())
    wait_for(lambda: Shipment.objects.filter(order_id=order.pk).exists(), 30, "the dispatch")
    # when the customer cancels it
    order_cancel(customer=order.customer, order_id=order.pk)
    start_saga("orders", relay_databases=())
    # then the payment is refunded and shipping flags the parcel for an operator
    _wait_refunded(order)
    wait_for(
        lambda: CancelledOrder.objects.filter(
            order_id=order.pk, parcel_already_dispatched=True
        ).exists(),
        30,
        "shipping to flag the dispatched parcel",
    )
    assert Shipment.objects.filter(order_id=order.pk).count() == 1
    # and the order never becomes shipped or delivered: the late steps are only noted
    _wait_timeline(order, "shipping.shipment.delivered")
    _wait_timeline(order, "payments.payment.refunded")
    assert order_status(order) == OrderStatus.CANCELLED
    late = order.timeline.filter(kind__startswith="shipping.").values_list("message", flat=True)
    assert all(message.endswith("(after cancellation)") for message in late)
    # and no "on its way" mail follows the cancellation mail
    wait_for(lambda: "payments.payment.refunded" in _mail_kinds(order), 30, "the refund mail")
    assert not _shipping_mail_after_cancellation(order)
