"""Integration events published by the shipping service."""

from outbox.registry import EventType, register

EXCHANGE = "fitness.shipping"
SOURCE = "fitness.shipping"
_PROPERTIES = {
    "order_id": {"type": "integer"},
    "tracking_number": {"type": "string", "format": "uuid"},
    "carrier": {"type": "string"},
    "customer_email": {"type": "string"},
}

SHIPMENT_DISPATCHED = register(
    EventType(
        type="shipping.shipment.dispatched",
        version=1,
        exchange=EXCHANGE,
        source=SOURCE,
        aggregate_type="shipment",
        description="A paid order left the warehouse with a carrier and a tracking number.",
        schema={
            "type": "object",
            "required": ["order_id", "tracking_number", "carrier", "dispatched_at"],
            "properties": {
                **_PROPERTIES,
                "dispatched_at": {"type": "string", "format": "date-time"},
            },
        },
    )
)

SHIPMENT_DELIVERED = register(
    EventType(
        type="shipping.shipment.delivered",
        version=1,
        exchange=EXCHANGE,
        source=SOURCE,
        aggregate_type="shipment",
        description="The carrier delivered the order's parcel.",
        schema={
            "type": "object",
            "required": ["order_id", "tracking_number", "carrier", "delivered_at"],
            "properties": {
                **_PROPERTIES,
                "delivered_at": {"type": "string", "format": "date-time"},
            },
        },
    )
)
