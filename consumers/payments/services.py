"""Write-side services of the payments service.

Each runs inside the consumer framework's transaction (the inbox entry, the payment row and the
outgoing event commit together), on the service's own database alias.

The charge and the refund of one order first take a lock on the order, held until that
transaction ends: the framework serialises ``orders.order.placed`` and ``orders.order.cancelled``
only when both carry a ``ce-sequence`` of the same aggregate (events imported from
django-outbox-pattern carry none). Without it, two workers could each miss the other's
uncommitted row — the cancellation finding no payment to refund, the charge no
``CancelledOrder`` — and leave a cancelled order charged, never refunded.
"""

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from django.utils import timezone

from consumers.payments.events import PAYMENT_AUTHORIZED, PAYMENT_DECLINED, PAYMENT_REFUNDED
from consumers.payments.models import CancelledOrder, Payment
from consumers.payments.rules import charge_decide
from outbox.consumer.locking import lock_for_transaction
from outbox.recording import record_event

DATABASE = "payments"
# Advisory locks in the two-key form (classid, objid); classid marks them as payments' ("pa").
ORDER_LOCK_NAMESPACE = 0x7061


def _lock_order(order_id: int) -> None:
    lock_for_transaction(namespace=ORDER_LOCK_NAMESPACE, key=str(order_id), using=DATABASE)


def _record(event_type: Any, payment: Payment, payload: dict[str, Any], causation_id: str) -> None:
    record_event(
        event_type,
        aggregate_id=str(payment.order_id),
        payload=payload,
        correlation_id=payment.correlation_id,
        causation_id=causation_id,
        using=DATABASE,
    )


def payment_charge_for_order(
    *, order: dict[str, Any], correlation_id: str, causation_id: str, today: date | None = None
) -> Payment | None:
    """Charge a placed order's card and record ``authorized`` or ``declined``.

    ``order`` is the ``orders.order.placed`` payload. Returns ``None`` without charging when the
    order was cancelled before its payment was taken, or when it was already charged.
    """
    order_id = order["order_id"]
    _lock_order(order_id)
    payments = Payment.objects.using(DATABASE)
    if CancelledOrder.objects.using(DATABASE).filter(order_id=order_id).exists():
        return None
    if payments.filter(order_id=order_id).exists():
        return None
    card = order["payment"]
    decision = charge_decide(
        token=card["token"],
        exp_month=card["exp_month"],
        exp_year=card["exp_year"],
        today=today or timezone.localdate(),
    )
    payment = payments.create(
        order_id=order_id,
        status=Payment.Status.AUTHORIZED if decision.approved else Payment.Status.DECLINED,
        amount=Decimal(order["total"]),
        currency=order["currency"],
        card_brand=card["brand"],
        card_last4=card["last4"],
        transaction_id=uuid.uuid4() if decision.approved else None,
        decline_reason=decision.reason,
        correlation_id=correlation_id,
    )
    base = {
        "order_id": order_id,
        "amount": order["total"],
        "currency": order["currency"],
        "customer_email": order["customer"]["email"],
    }
    if decision.approved:
        payload = {
            **base,
            "transaction_id": str(payment.transaction_id),
            "card_brand": payment.card_brand,
            "card_last4": payment.card_last4,
            "delivery": order["delivery"],
            "address": order["address"],
        }
        _record(PAYMENT_AUTHORIZED, payment, payload, causation_id)
    else:
        payload = {**base, "reason": decision.reason, "message": decision.message}
        _record(PAYMENT_DECLINED, payment, payload, causation_id)
    return payment


def payment_refund_for_cancelled_order(
    *, order_id: int, reason: str, causation_id: str
) -> Payment | None:
    """Remember the cancellation and refund the order's payment if it was authorized.

    Returns the refunded payment, or ``None`` when there was nothing to refund (not charged yet,
    declined, or already refunded).
    """
    _lock_order(order_id)
    CancelledOrder.objects.using(DATABASE).get_or_create(
        order_id=order_id, defaults={"reason": reason[:255]}
    )
    payment = Payment.objects.using(DATABASE).select_for_update().filter(order_id=order_id).first()
    if payment is None or payment.status != Payment.Status.AUTHORIZED:
        return None
    payment.status = Payment.Status.REFUNDED
    payment.refunded_at = timezone.now()
    payment.save(update_fields=["status", "refunded_at"])
    payload = {
        "order_id": order_id,
        "amount": f"{payment.amount:.2f}",
        "currency": payment.currency,
        "transaction_id": str(payment.transaction_id),
    }
    _record(PAYMENT_REFUNDED, payment, payload, causation_id)
    return payment
