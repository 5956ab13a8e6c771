"""What the e-mails say, built from each event's payload alone."""

from typing import Any

Message = tuple[str, str]


def _placed(p: dict[str, Any]) -> Message:
    lines = "\n".join(f"  {line['quantity']} x {line['name']}" for line in p["lines"])
    return (
        f"Your ACME Fitness order #{p['order_id']}",
        f"Thank you for your order!\n\n{lines}\n\nTotal: {p['total']} {p['currency']}\n"
        "We are taking the payment now and will write again when it ships.",
    )


def _authorized(p: dict[str, Any]) -> Message:
    return (
        f"Payment received for order #{p['order_id']}",
        f"We charged {p['amount']} {p['currency']} to your {p['card_brand']} card ending in "
        f"{p['card_last4']}. Your order is being packed.",
    )


def _declined(p: dict[str, Any]) -> Message:
    return (
        f"Payment declined for order #{p['order_id']}",
        f"We could not charge your card: {p['message']} Your order was not shipped and the "
        "items were put back on the shelf.",
    )


def _dispatched(p: dict[str, Any]) -> Message:
    return (
        f"Order #{p['order_id']} is on its way",
        f"Your parcel left with {p['carrier']}. Tracking number: {p['tracking_number']}.",
    )


def _delivered(p: dict[str, Any]) -> Message:
    return (
        f"Order #{p['order_id']} was delivered",
        f"{p['carrier']} delivered your parcel ({p['tracking_number']}). Enjoy your workout!",
    )


def _cancelled(p: dict[str, Any]) -> Message:
    return (
        f"Order #{p['order_id']} was cancelled",
        f"Your order was cancelled: {p['reason']} Any payment taken will be refunded.",
    )


def _refunded(p: dict[str, Any]) -> Message:
    return (
        f"Refund for order #{p['order_id']}",
        f"We refunded {p['amount']} {p['currency']} to your card.",
    )


MESSAGES = {
    "orders.order.placed": _placed,
    "payments.payment.authorized": _authorized,
    "payments.payment.declined": _declined,
    "shipping.shipment.dispatched": _dispatched,
    "shipping.shipment.delivered": _delivered,
    "orders.order.cancelled": _cancelled,
    "payments.payment.refunded": _refunded,
}


def message_for(event_type: str, payload: dict[str, Any]) -> Message:
    """Subject and body of the e-mail for one event."""
    return MESSAGES[event_type](payload)
