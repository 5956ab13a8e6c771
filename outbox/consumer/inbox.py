"""The inbox and the per-aggregate high-water mark, written inside the handler's transaction.

Raw SQL on purpose: ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` tells in one round trip, and
without a savepoint, whether this service has seen the event; the ORM's ``ignore_conflicts``
cannot say which case happened.
"""

import uuid
from datetime import datetime

from django.db import connections

from outbox.consumer.events import ReceivedEvent

INSERT_INBOX_SQL = """
INSERT INTO outbox_consumer_inbox
    (service, event_id, event_type, source, subject, sequence, correlation_id, attempts,
     received_at, handled_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())
ON CONFLICT (service, event_id) DO NOTHING
RETURNING id
"""
MARK_HANDLED_SQL = "UPDATE outbox_consumer_inbox SET handled_at = clock_timestamp() WHERE id = %s"

ADVANCE_SEQUENCE_SQL = """
INSERT INTO outbox_consumer_applied_sequence
    (service, source, aggregate_type, subject, last_sequence, updated_at)
VALUES (%s, %s, %s, %s, %s, now())
ON CONFLICT (service, source, aggregate_type, subject) DO UPDATE
SET last_sequence = GREATEST(outbox_consumer_applied_sequence.last_sequence,
                             EXCLUDED.last_sequence),
    updated_at = now()
RETURNING last_sequence
"""
LAST_SEQUENCE_SQL = """
SELECT last_sequence FROM outbox_consumer_applied_sequence
WHERE service = %s AND source = %s AND aggregate_type = %s AND subject = %s
"""


def inbox_key(event: ReceivedEvent) -> uuid.UUID:
    """The id the inbox deduplicates ``event`` on: its own id, except for a reprocess replay.

    ``replay_events --reprocess`` asks a service to apply events it has already handled (to
    rebuild a projection). Those deliveries are keyed ``uuid5(event id, run id)`` instead, so the
    existing unique ``(service, event_id)`` does the de-duplication *per replay run*: the first
    handling does not block the reprocess, a resumed run (same run id) sends some events twice
    and they still apply once, and a new run applies everything once more. The inbox row then
    holds the derived id (its type, subject and sequence are the event's own).
    """
    if event.reprocess and event.replay_run:
        return uuid.uuid5(event.id, event.replay_run)
    return event.id


def inbox_insert(
    *, service: str, event: ReceivedEvent, attempts: int, received_at: datetime, using: str
) -> int | None:
    """Record ``event`` as handled by ``service``; the row id, or None if it already was.

    The key is :func:`inbox_key` (the event id, or a per-run id for reprocess replays).

    A concurrent transaction inserting the same key makes this wait for its outcome (the unique
    index entry is locked until commit or rollback), so two workers never both run the handler.
    """
    with connections[using].cursor() as cursor:
        cursor.execute(
            INSERT_INBOX_SQL,
            [
                service,
                inbox_key(event),
                event.type,
                event.source,
                event.subject,
                event.sequence,
                event.correlation_id,
                attempts,
                received_at,
            ],
        )
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def inbox_mark_handled(*, entry_id: int, using: str) -> None:
    """Stamp the inbox row with the time the handler returned (still inside its transaction)."""
    with connections[using].cursor() as cursor:
        cursor.execute(MARK_HANDLED_SQL, [entry_id])


def sequence_advance(*, service: str, event: ReceivedEvent, using: str) -> int | None:
    """Raise the aggregate's high-water mark to ``event.sequence``; return the mark after that.

    The row stays locked until the transaction ends: handlers of one aggregate in one service run
    one after the other even with several workers, so a handler checking "is my predecessor
    applied?" sees its predecessor's commit instead of racing it. A returned mark greater than
    ``event.sequence`` means a later event of the aggregate was applied first (``superseded``).
    """
    if event.sequence is None:
        return None
    with connections[using].cursor() as cursor:
        cursor.execute(
            ADVANCE_SEQUENCE_SQL,
            [service, event.source, event.aggregate_type, event.subject, event.sequence],
        )
        return int(cursor.fetchone()[0])


def last_applied_sequence(*, service: str, event: ReceivedEvent, using: str) -> int | None:
    """The highest sequence of ``event``'s aggregate that ``service`` has applied, if any."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            LAST_SEQUENCE_SQL, [service, event.source, event.aggregate_type, event.subject]
        )
        row = cursor.fetchone()
    return None if row is None else int(row[0])
