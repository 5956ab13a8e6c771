"""How an outbox row looks on the wire: CloudEvents 1.0 in binary mode over AMQP 0-9-1.

The body is the JSON payload; the envelope travels in AMQP properties and ``ce-`` headers (the
convention of the CloudEvents SDK's RabbitMQ binding). See docs/events.md for the table.
"""

import json

import amqp

from outbox.models import OutboxMessage

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
PERSISTENT = 2


def encode_body(message: OutboxMessage) -> bytes:
    """The message body: the payload as compact UTF-8 JSON."""
    return json.dumps(message.payload, separators=(",", ":"), ensure_ascii=False).encode()


def envelope_headers(message: OutboxMessage) -> dict[str, str | int]:
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


def to_amqp(message: OutboxMessage, body: bytes | None = None) -> amqp.Message:
    """Build the persistent AMQP message for an outbox row."""
    return amqp.Message(
        body if body is not None else encode_body(message),
        content_type=CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        message_id=str(message.event_id),
        correlation_id=message.correlation_id,
        type=message.type,
        app_id=message.source,
        timestamp=int(message.occurred_at.timestamp()),
        application_headers=envelope_headers(message),
    )


def encoded_size(message: OutboxMessage, body: bytes) -> int:
    """An upper-bound estimate of the bytes the broker will see (body plus headers)."""
    return len(body) + len(json.dumps(envelope_headers(message)).encode())
