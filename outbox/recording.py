"""Record an integration event in the caller's database transaction (the outbox's write side)."""

import json
import uuid
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.utils import timezone
from jsonschema.exceptions import best_match

from outbox import tracing
from outbox.conf import get_settings
from outbox.exceptions import InvalidOccurredAt, InvalidPayload, NotInTransaction
from outbox.models import MAX_ID_LENGTH, OutboxMessage
from outbox.partitioning import partition_for
from outbox.registry import EventType, get_validator
from outbox.signing import get_keyring, sign_row

# Envelope attributes travel as `ce-*` headers, and the outbox's own (signature, replay) as
# `x-outbox-*`: callers must not smuggle either in.
RESERVED_HEADER_PREFIXES = ("ce-", "x-outbox-")

NEXT_SEQUENCE_SQL = """
INSERT INTO outbox_aggregate_sequence (aggregate_type, aggregate_id, last_sequence)
VALUES (%s, %s, 1)
ON CONFLICT (aggregate_type, aggregate_id)
DO UPDATE SET last_sequence = outbox_aggregate_sequence.last_sequence + 1
RETURNING last_sequence
"""


def record_event(
    event_type: EventType,
    *,
    aggregate_id: str,
    payload: dict,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    headers: dict | None = None,
    using: str = "default",
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> OutboxMessage:
    """Write ``payload`` as an event of ``event_type`` to the outbox, in the current transaction.

    The row commits or rolls back with the caller's business change; ``relay_outbox`` publishes
    it after commit. Raises :class:`NotInTransaction` outside ``transaction.atomic()``,
    :class:`InvalidPayload` when the payload is not JSON or fails the type's schema,
    :class:`InvalidOccurredAt` for a naive or future ``occurred_at`` (:func:`validate_occurred_at`),
    :class:`UnknownEventType` when ``event_type`` is not registered, and
    :class:`~outbox.signing.SigningConfigError` when its source has no signing key. ``headers``
    are extra AMQP headers (strings, ints or booleans). Unless they bring their own
    ``traceparent``, the event gets a child span of the current W3C trace (the web request's, the
    handled event's; a new trace outside both): see ``outbox.tracing``. It is also sent as the
    CloudEvents ``traceparent`` extension.

    ``event_id`` and ``occurred_at`` default to a fresh uuid4 and now; an importer of events
    that already have an identity (``import_outbox_pattern``) passes theirs, so a consumer can
    recognise the same event arriving from both sides. A past ``occurred_at`` is fine (imports,
    events that happened elsewhere); one more than ``OUTBOX_MAX_FUTURE_SKEW`` ahead is not.

    The row is signed here, in the producer's process, with its source's current key
    (``outbox.signing``): the relay that publishes it never needs the key.
    """
    if not transaction.get_connection(using).in_atomic_block:
        raise NotInTransaction(
            f"record_event({event_type.type}) must run inside transaction.atomic() so the event "
            "commits or rolls back with the change it describes"
        )
    aggregate_id = str(aggregate_id)
    for name, value in (("correlation_id", correlation_id), ("causation_id", causation_id)):
        if value is not None and len(value) > MAX_ID_LENGTH:
            raise ValueError(f"record_event: {name} is longer than {MAX_ID_LENGTH} characters")
    validate_payload(event_type, payload)
    if occurred_at is not None:
        validate_occurred_at(event_type, occurred_at)
    extra_headers = _clean_headers(event_type, headers or {})
    extra_headers.setdefault(tracing.HEADER, tracing.outgoing_traceparent())
    source = event_type.source or get_settings().source
    # The key first: a source without one is refused before the aggregate's sequence moves (a
    # caller that catches the error and commits would otherwise leave a gap in it).
    key = get_keyring().current(source)
    sequence = _next_sequence(event_type.aggregate_type, aggregate_id, using)
    event_id = event_id or uuid.uuid4()
    message = OutboxMessage(
        event_id=event_id,
        source=source,
        type=event_type.type,
        schema_version=event_type.version,
        aggregate_type=event_type.aggregate_type,
        aggregate_id=aggregate_id,
        sequence=sequence,
        # A saga's first event starts the correlation: its own id.
        correlation_id=correlation_id or str(event_id),
        causation_id=causation_id or "",
        occurred_at=occurred_at or timezone.now(),
        headers=extra_headers,
        payload=payload,
        exchange=event_type.exchange,
        routing_key=event_type.routing_key,
        partition=partition_for(event_type.aggregate_type, aggregate_id, get_settings().partitions),
    )
    sign_row(message, key=key)
    message.save(using=using, force_insert=True)
    return message


def validate_payload(event_type: EventType, payload: Any) -> None:
    """Raise InvalidPayload unless ``payload`` is a plain-JSON object matching the schema."""
    if not isinstance(payload, dict):
        raise InvalidPayload(
            event_type.type, event_type.version, "$", "the payload must be a JSON object (dict)"
        )
    try:
        # Plain json, no DjangoJSONEncoder: what the schema validates must be what consumers get,
        # so a Decimal or datetime must be turned into a string by the caller, explicitly.
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(
            event_type.type,
            event_type.version,
            "$",
            f"not JSON-serialisable ({exc}); pass decimals, dates and UUIDs as strings",
        ) from exc
    bad_text = _unstorable_text(payload, "$")
    if bad_text is not None:
        raise InvalidPayload(event_type.type, event_type.version, *bad_text)
    error = best_match(get_validator(event_type).iter_errors(payload))
    if error is not None:
        raise InvalidPayload(event_type.type, event_type.version, error.json_path, error.message)


def validate_occurred_at(event_type: EventType, occurred_at: Any) -> None:
    """Raise InvalidOccurredAt unless ``occurred_at`` is an aware datetime that is not more than
    ``OUTBOX_MAX_FUTURE_SKEW`` seconds ahead of this process's clock. Any past time is fine.

    Prune walks ``occurred_at`` (``outbox.pruning``): a row dated in the future would outlive the
    retention window until that date, and consumers would get a ``time`` that has not happened.
    The bound is this process's clock, the one ``record_event`` dates events with by default (no
    database round trip); the skew allows for the clock of whoever supplied the time.
    """
    if not isinstance(occurred_at, datetime) or timezone.is_naive(occurred_at):
        raise InvalidOccurredAt(
            event_type.type,
            event_type.version,
            f"{occurred_at!r} is not a timezone-aware datetime: pass one with its zone "
            "(e.g. django.utils.timezone.now() or datetime(..., tzinfo=UTC)), so the event's "
            "time is not guessed from a server's local zone",
            summary="occurred_at is not a timezone-aware datetime",
        )
    now = timezone.now()
    skew = get_settings().max_future_skew
    ahead = (occurred_at - now).total_seconds()
    if ahead > skew:
        raise InvalidOccurredAt(
            event_type.type,
            event_type.version,
            f"{occurred_at.isoformat()} is {ahead:.0f} s ahead of now ({now.isoformat()}), more "
            f"than OUTBOX_MAX_FUTURE_SKEW={skew:g} s allows; pass the time the event happened "
            "(or no occurred_at for now), or fix the clock that produced it",
            summary=f"occurred_at more than OUTBOX_MAX_FUTURE_SKEW={skew:g} s ahead of this clock",
        )


def _unstorable_text(value: Any, path: str) -> tuple[str, str] | None:
    """(JSON path, reason) of the first string (key or value) that cannot travel as UTF-8 JSON
    text: a NUL character, which consumers' databases refuse, or a lone surrogate, which is not
    Unicode. The payload column stores the text as it is (``json``), so this is checked here,
    with the path, rather than left to fail (or not) further on."""
    if isinstance(value, str):
        if "\x00" in value:
            return path, "NUL characters (\\u0000) are not allowed in text"
        try:
            value.encode()
        except UnicodeEncodeError:
            return path, "text must be valid Unicode (it contains a lone surrogate)"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _unstorable_text(key, f"{path}.{key}") if isinstance(key, str) else None
            found = found or _unstorable_text(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _unstorable_text(item, f"{path}[{index}]")
            if found:
                return found
    return None


def _clean_headers(event_type: EventType, headers: dict) -> dict:
    """Check extra headers are AMQP-friendly scalars and do not shadow the envelope."""
    for key, value in headers.items():
        if not isinstance(key, str) or key.lower().startswith(RESERVED_HEADER_PREFIXES):
            raise InvalidPayload(
                event_type.type,
                event_type.version,
                f"headers[{key!r}]",
                "header names must be strings not starting with "
                + " or ".join(repr(prefix) for prefix in RESERVED_HEADER_PREFIXES),
            )
        if not isinstance(value, str | int | bool):
            raise InvalidPayload(
                event_type.type,
                event_type.version,
                f"headers[{key!r}]",
                "header values must be str, int or bool",
            )
    return dict(headers)


def _next_sequence(aggregate_type: str, aggregate_id: str, using: str) -> int:
    """Allocate the aggregate's next sequence number; the row lock is held until commit."""
    with connections[using].cursor() as cursor:
        cursor.execute(NEXT_SEQUENCE_SQL, [aggregate_type, aggregate_id])
        return int(cursor.fetchone()[0])
