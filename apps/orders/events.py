"""Integration events published by the orders app (the monolith's checkout).

Each event is declared once here with its JSON Schema and major version; the outbox registry
collects them for ``setup_broker``, the relay and the generated docs. Payloads carry only a
payment token, brand, last four digits and expiry: never a card number or a CVV.
"""

from outbox.registry import EventType, register

EXCHANGE = "fitness.orders"

_MONEY = {"type": "string", "pattern": r"^-?\d+\.\d{2}$"}
_ADDRESS = {
    "type": "object",
    "required": ["name", "street", "city", "zip", "country"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "street": {"type": "string", "minLength": 1},
        "city": {"type": "string", "minLength": 1},
        "zip": {"type": "string", "minLength": 1},
        "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
    },
}
_LINE = {
    "type": "object",
    "required": ["product_id", "sku", "name", "unit_price", "quantity"],
    "properties": {
        "product_id": {"type": "integer"},
        "sku": {"type": "string"},
        "name": {"type": "string"},
        "unit_price": _MONEY,
        "quantity": {"type": "integer", "minimum": 1},
    },
}
_CUSTOMER = {
    "type": "object",
    "required": ["id", "email", "name"],
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": "string"},
        "name": {"type": "string"},
    },
}

ORDER_PLACED = register(
    EventType(
        type="orders.order.placed",
        version=1,
        exchange=EXCHANGE,
        aggregate_type="order",
        description=(
            "A customer checked out: the order exists, its stock is reserved and payment is "
            "requested with the card's token."
        ),
        schema={
            "type": "object",
            "required": [
                "order_id",
                "customer",
                "lines",
                "subtotal",
                "delivery_cost",
                "total",
                "currency",
                "address",
                "delivery",
                "payment",
                "placed_at",
            ],
            "properties": {
                "order_id": {"type": "integer"},
                "customer": _CUSTOMER,
                "lines": {"type": "array", "minItems": 1, "items": _LINE},
                "subtotal": _MONEY,
                "delivery_cost": _MONEY,
                "total": _MONEY,
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "address": _ADDRESS,
                "delivery": {"type": "string", "enum": ["standard", "express"]},
                "payment": {
                    "type": "object",
                    "required": ["token", "brand", "last4", "exp_month", "exp_year"],
                    "additionalProperties": False,
                    "properties": {
                        "token": {"type": "string", "minLength": 1},
                        "brand": {"type": "string"},
                        "last4": {"type": "string", "pattern": r"^\d{4}$"},
                        "exp_month": {"type": "integer", "minimum": 1, "maximum": 12},
                        "exp_year": {"type": "integer"},
                    },
                },
                "placed_at": {"type": "string", "format": "date-time"},
            },
        },
    )
)

ORDER_CANCELLED = register(
    EventType(
        type="orders.order.cancelled",
        version=1,
        exchange=EXCHANGE,
        aggregate_type="order",
        description=(
            "An order was cancelled (by its customer or staff) and its stock released; a paid "
            "order must now be refunded."
        ),
        schema={
            "type": "object",
            "required": [
                "order_id",
                "customer",
                "previous_status",
                "reason",
                "total",
                "lines",
                "cancelled_at",
            ],
            "properties": {
                "order_id": {"type": "integer"},
                "customer": _CUSTOMER,
                "previous_status": {"type": "string"},
                "reason": {"type": "string"},
                "total": _MONEY,
                "lines": {"type": "array", "items": _LINE},
                "cancelled_at": {"type": "string", "format": "date-time"},
            },
        },
    )
)
