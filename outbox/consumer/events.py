"""What a handler receives, and how it is read off the wire (the inverse of ``outbox.wire``).

The relay publishes CloudEvents 1.0 in binary mode: the JSON body is the payload and the envelope
travels as ``ce-*`` application headers, with the event id also in the AMQP ``message_id``.
Anything that does not parse into a complete envelope and a JSON object is *terminal*: no retry
will ever make it readable, so :class:`InvalidEnvelope` sends it straight to the dead letters.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from outbox import outbox_pattern as dop
from outbox.exceptions import PermanentError

# Envelope attributes without which a delivery cannot be handled (CloudEvents' own required
# attributes plus the extensions our relay always sets). `sequence`/`causationid` are optional.
REQUIRED_HEADERS = (
    "ce-specversion",
    "ce-type",
    "ce-source",
    "ce-dataversion",
    "ce-time",
    "ce-subject",
    "ce-correlationid",
)
# Set by ``replay_events`` on re-delivered events (docs/replay.md): the replay marker, the run
# id, and, for ``--reprocess`` runs, the request to apply the event again (see inbox.inbox_key).
REPLAY_HEADER = "x-outbox-replay"
REPLAY_RUN_HEADER = "x-outbox-replay-run"
REPROCESS_HEADER = "x-outbox-reprocess"


class InvalidEnvelope(PermanentError):
    """The delivery is not a well-formed event: malformed body or missing/invalid envelope."""


@dataclass(frozen=True)
class ReceivedEvent:
    """One consumed event: the CloudEvents envelope, the validated payload and the AMQP headers.

    ``headers`` are the delivery's application headers as received (``ce-*`` included, plus
    ``traceparent`` and the retry bookkeeping ``x-retry-count`` when present).
    """

    id: uuid.UUID
    type: str
    version: int
    source: str
    subject: str
    sequence: int | None
    time: datetime
    correlation_id: str
    causation_id: str | None
    payload: dict[str, Any]
    headers: dict[str, Any]
    replay: bool = False
    # Set on replayed deliveries only: the replay run's id, and whether the run asks the service
    # to apply the event again although it already handled it (``replay_events --reprocess``).
    replay_run: str | None = None
    reprocess: bool = False
    # Sent by django-outbox-pattern's publisher, not by our relay: no envelope, no signature
    # (accepted only by services that opted in, see docs/migrating-from-django-outbox-pattern.md).
    outbox_pattern: bool = False

    @property
    def aggregate_type(self) -> str:
        """The producer's aggregate type (``ce-aggregatetype``), or "" when not sent."""
        return str(self.headers.get("ce-aggregatetype") or "")


def parse_event(body: bytes | str, properties: dict[str, Any]) -> ReceivedEvent:
    """Read an AMQP delivery (body + properties) into a :class:`ReceivedEvent`.

    Raises :class:`InvalidEnvelope` with a reason an operator can act on. The payload is *not*
    schema-validated here: that needs the registry and happens in the dispatcher. A message of
    django-outbox-pattern (no content type, ``dop-*`` headers) is read by
    :func:`parse_outbox_pattern_event`.
    """
    if dop.is_outbox_pattern_message(properties):
        return parse_outbox_pattern_event(body, properties)
    headers = dict(properties.get("application_headers") or {})
    missing = [name for name in REQUIRED_HEADERS if _blank(headers.get(name))]
    if missing:
        raise InvalidEnvelope(f"missing envelope field(s): {', '.join(missing)}")
    replay = _truthy(headers.get(REPLAY_HEADER))
    replay_run = _text(headers.get(REPLAY_RUN_HEADER)) if replay else None
    return ReceivedEvent(
        id=_event_id(headers, properties),
        type=str(headers["ce-type"]),
        version=_positive_int(headers["ce-dataversion"], "ce-dataversion"),
        source=str(headers["ce-source"]),
        subject=str(headers["ce-subject"]),
        sequence=_optional_sequence(headers.get("ce-sequence")),
        time=_time(headers["ce-time"]),
        correlation_id=str(headers["ce-correlationid"]),
        causation_id=str(headers["ce-causationid"]) if headers.get("ce-causationid") else None,
        payload=decode_payload(body),
        headers=headers,
        replay=replay,
        replay_run=replay_run,
        # Only meaningful for a replay that names its run: the run id is part of the inbox key.
        reprocess=bool(replay_run) and _truthy(headers.get(REPROCESS_HEADER)),
    )


def parse_outbox_pattern_event(body: bytes | str, properties: dict[str, Any]) -> ReceivedEvent:
    """Read a message django-outbox-pattern sent over STOMP (see :mod:`outbox.outbox_pattern`).

    The event id is its ``dop-msg-id`` — the id ``import_outbox_pattern`` gives the same event in
    our outbox, so the inbox applies the event once whichever side delivers it first. Without a
    UUID there, or without a destination naming a registered event type, the message is an
    :class:`InvalidEnvelope`: dead-lettered with the reason, never applied blindly.
    """
    headers = dict(properties.get("application_headers") or {})
    try:
        event_id = dop.message_id(headers)
        destination = dop.parse_destination(str(headers.get(dop.DESTINATION_HEADER) or ""))
        event_type = dop.event_type_for(destination.routing_key)
    except dop.Unmappable as exc:
        raise InvalidEnvelope(f"django-outbox-pattern message: {exc}") from exc
    return ReceivedEvent(
        id=event_id,
        type=event_type.type,
        version=event_type.version,
        source=event_type.source or dop.SOURCE,
        # No order on its side: each event is its own aggregate, as import_outbox_pattern does.
        subject=str(event_id),
        sequence=None,
        time=_sent_time(headers.get(dop.SENT_TIME_HEADER)),
        correlation_id=dop.correlation_id(headers, event_id),
        causation_id=None,
        payload=decode_payload(body),
        headers=headers,
        outbox_pattern=True,
    )


def _sent_time(value: Any) -> datetime:
    """Its ``dop-msg-sent-time`` (when the row was saved), else now: informative only."""
    try:
        return _time(value)
    except InvalidEnvelope:
        return datetime.now(UTC)


def decode_payload(body: bytes | str) -> dict[str, Any]:
    """The JSON object in ``body``; anything else is an :class:`InvalidEnvelope`."""
    # py-amqp hands the body over as `str` when the publisher set `content_encoding`.
    raw = body.encode() if isinstance(body, str) else bytes(body)
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: nesting deeper than the parser follows. Not a ValueError, and anything
        # but InvalidEnvelope would requeue the delivery over and over.
        raise InvalidEnvelope(f"malformed JSON body: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidEnvelope(f"the body must be a JSON object, not {type(payload).__name__}")
    return payload


def _event_id(headers: dict[str, Any], properties: dict[str, Any]) -> uuid.UUID:
    ce_id, message_id = headers.get("ce-id"), properties.get("message_id")
    if _blank(ce_id) and _blank(message_id):
        raise InvalidEnvelope("missing envelope field(s): ce-id (and AMQP message_id)")
    if not _blank(ce_id) and not _blank(message_id) and str(ce_id) != str(message_id):
        raise InvalidEnvelope(f"ce-id {ce_id!r} differs from message_id {message_id!r}")
    try:
        return uuid.UUID(str(message_id if _blank(ce_id) else ce_id))
    except ValueError as exc:
        raise InvalidEnvelope(f"event id is not a UUID: {exc}") from exc


def _positive_int(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidEnvelope(f"{name} is not an integer: {value!r}") from exc
    if number < 1 or isinstance(value, bool):
        raise InvalidEnvelope(f"{name} must be a positive integer: {value!r}")
    return number


def _optional_sequence(value: Any) -> int | None:
    return None if _blank(value) else _positive_int(value, "ce-sequence")


def _time(value: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise InvalidEnvelope(f"ce-time is not an RFC 3339 timestamp: {value!r}") from exc
    if moment.tzinfo is None:
        raise InvalidEnvelope(f"ce-time has no time zone: {value!r}")
    return moment


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str | bytes) and not value.strip())


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return None if _blank(value) else str(value).strip()


def _truthy(value: Any) -> bool:
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return str(value).strip().lower() in {"1", "true", "yes"} if value is not None else False
