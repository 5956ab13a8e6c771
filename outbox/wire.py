"""How an outbox row looks on the wire: CloudEvents 1.0 in binary mode over AMQP 0-9-1.

The body is the JSON payload; the envelope travels in AMQP properties and ``ce-`` headers (the
convention of the CloudEvents SDK's RabbitMQ binding). See docs/events.md for the table.
"""

import json
from typing import TYPE_CHECKING, Any

import amqp

if TYPE_CHECKING:
    from outbox.claiming import ClaimedRow
    from outbox.models import OutboxMessage

    Row = OutboxMessage | ClaimedRow

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
PERSISTENT = 2


def encode_body(message: "Row") -> bytes:
    """The message body: the payload as UTF-8 JSON.

    A claimed row carries PostgreSQL's text form of the jsonb payload and it is sent as it is
    (no decode and re-encode in the relay); a model instance is dumped compactly.
    """
    text = getattr(message, "payload_json", None)
    if text is not None:
        return text.encode()
    return json.dumps(message.payload, separators=(",", ":"), ensure_ascii=False).encode()


def envelope_headers(message: "Row") -> dict[str, str | int]:
    """The CloudEvents attributes as ``ce-`` headers, plus the row's extra headers."""
    headers: dict[str, str | int] = dict(message.headers or {})
    headers.update(
        {
            "ce-specversion": SPECVERSION,
            "ce-id": str(message.event_id),
            "ce-source": message.source,
            "ce-type": message.type,
            "ce-time": message.occurred_at.isoformat().replace("+00:00", "Z"),
            "ce-subject": message.aggregate_id,
            "ce-dataversion": message.schema_version,
            "ce-sequence": message.sequence,
            "ce-aggregatetype": message.aggregate_type,
            "ce-correlationid": message.correlation_id,
        }
    )
    if message.causation_id:
        headers["ce-causationid"] = message.causation_id
    if "traceparent" in headers:
        headers["ce-traceparent"] = headers["traceparent"]
    return headers


def amqp_properties(message: "Row", headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """The AMQP basic properties of an outbox row (``headers``: if already built)."""
    return {
        "content_type": CONTENT_TYPE,
        "delivery_mode": PERSISTENT,
        "message_id": str(message.event_id),
        "correlation_id": message.correlation_id,
        "type": message.type,
        "app_id": message.source,
        "timestamp": int(message.occurred_at.timestamp()),
        "application_headers": headers if headers is not None else envelope_headers(message),
    }


def to_amqp(
    message: "Row", body: bytes | None = None, headers: dict[str, Any] | None = None
) -> amqp.Message:
    """Build the persistent AMQP message for an outbox row (``headers``: if already built)."""
    return amqp.Message(
        body if body is not None else encode_body(message), **amqp_properties(message, headers)
    )
