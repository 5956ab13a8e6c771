"""Integration events published by the payments service."""

from outbox.registry import EventType, register

EXCHANGE = "fitness.payments"
SOURCE = "fitness.payments"
_MONEY = {"type": "string", "pattern": r"^-?\d+\.\d{2}$"}
_BASE_REQUIRED = ["order_id", "amount", "currency"]
_BASE_PROPERTIES = {
    "order_id": {"type": "integer"},
    "amount": _MONEY,
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    "customer_email": {"type": "string"},
}

PAYMENT_AUTHORIZED = register(
    EventType(
        type="payments.payment.authorized",
        version=1,
        exchange=EXCHANGE,
        source=SOURCE,
        aggregate_type="payment",
        description="The order's card was charged; the order can be shipped.",
        schema={
            "type": "object",
            "required": [*_BASE_REQUIRED, "transaction_id", "card_brand", "card_last4"],
            "properties": {
                **_BASE_PROPERTIES,
                "transaction_id": {"type": "string", "format": "uuid"},
                "card_brand": {"type": "string"},
                "card_last4": {"type": "string", "pattern": r"^\d{4}$"},
                "delivery": {"type": "string"},
                "address": {"type": "object"},
            },
        },
    )
)

PAYMENT_DECLINED = register(
    EventType(
        type="payments.payment.declined",
        version=1,
        exchange=EXCHANGE,
        source=SOURCE,
        aggregate_type="payment",
        description="The order's card was declined (expired, or refused by the issuer).",
        schema={
            "type": "object",
            "required": [*_BASE_REQUIRED, "reason", "message"],
            "properties": {
                **_BASE_PROPERTIES,
                "reason": {"type": "string", "enum": ["card_expired", "card_declined"]},
                "message": {"type": "string"},
            },
        },
    )
)

PAYMENT_REFUNDED = register(
    EventType(
        type="payments.payment.refunded",
        version=1,
        exchange=EXCHANGE,
        source=SOURCE,
        aggregate_type="payment",
        description="A cancelled order's authorized payment was refunded in full.",
        schema={
            "type": "object",
            "required": [*_BASE_REQUIRED, "transaction_id"],
            "properties": {**_BASE_PROPERTIES, "transaction_id": {"type": "string"}},
        },
    )
)
