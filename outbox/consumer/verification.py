"""Checking a delivery's signature before anything acts on it (see ``outbox.signing``).

Every check failure is an :class:`~outbox.signing.InvalidSignature`, a terminal error: the
dispatcher dead-letters the delivery with the reason, exactly like a malformed envelope.
"""

from typing import Any

import amqp

from outbox.conf import get_settings
from outbox.consumer.events import ReceivedEvent, parse_event
from outbox.exceptions import UnknownEventType
from outbox.registry import get_event_type
from outbox.signing import Envelope, InvalidSignature, Keyring, SigningKey, sign, verify


def envelope_of(event: ReceivedEvent, properties: dict[str, Any]) -> Envelope:
    """The signed attributes as received (the ``ce-*`` headers and ``content_type``)."""
    return Envelope(
        id=str(event.id),
        source=event.source,
        type=event.type,
        specversion=str(event.headers.get("ce-specversion")),
        dataversion=event.version,
        time=event.time,
        subject=event.subject,
        aggregatetype=event.aggregate_type,
        sequence=event.sequence,
        correlationid=event.correlation_id,
        causationid=event.causation_id,
        datacontenttype=properties.get("content_type"),
    )


def verify_event(
    event: ReceivedEvent, properties: dict[str, Any], *, keyring: Keyring | None = None
) -> SigningKey:
    """Raise :class:`InvalidSignature` unless ``event`` is signed by a key of its own source,
    and that source is the one that publishes its type.

    The second check stops a service from using its own (valid) key to publish another
    service's event type: payments' key cannot make an ``orders.order.placed``. A type the
    registry does not know is left to the dispatcher (dead-lettered as unknown).
    """
    key = verify(envelope_of(event, properties), event.payload, event.headers, keyring=keyring)
    try:
        event_type = get_event_type(event.type, event.version)
    except UnknownEventType:
        return key
    publisher = event_type.source or get_settings().source
    if event.source != publisher:
        raise InvalidSignature(
            "source_mismatch",
            f"source mismatch: {event.type} v{event.version} is published by {publisher!r}, "
            f"not by {event.source!r}",
        )
    return key


def sign_message(message: amqp.Message, key: SigningKey) -> amqp.Message:
    """Sign a hand-built AMQP event message in place, as its producer would have (tests, chaos).

    The message must parse as an event; the signature covers what a consumer will read of it.
    """
    properties = dict(message.properties)
    event = parse_event(message.body, properties)
    headers = dict(properties.get("application_headers") or {})
    headers.update(sign(envelope_of(event, properties), event.payload, key))
    message.properties["application_headers"] = headers
    return message
