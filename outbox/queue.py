"""Keeping the relay's queue (``outbox_pending``) in step with the outbox rows it lists.

Outbox code keeps them in step by itself: the INSERT trigger (migration 0007) queues new rows,
the mark and failures (``outbox.claiming``) dequeue or update them, :func:`requeue` puts
un-parked rows back. The repairs below are for what it cannot see: a relay of the previous
release during an upgrade (marks rows without dequeuing them), a previous release's "retry now"
(un-parks rows without queuing them), an UPDATE or DELETE made by hand. ``prune_outbox`` and
the scheduled prune drop stale entries on every run (a walk of the queue, as small as the
backlog); ``manage.py repair_outbox_queue`` also queues what is missing (a scan of the whole
table: run it after an upgrade or a hand-made change, not on a schedule).
"""

import logging

from django.db import connections

logger = logging.getLogger(__name__)

# Entries whose row is published, parked or gone: the claim skips them, but they count in the
# backlog gauges and are walked by every claim until removed.
DROP_STALE_SQL = """
DELETE FROM outbox_pending AS p
WHERE NOT EXISTS (
    SELECT 1 FROM outbox_message AS m
    WHERE m.id = p.id AND m.published_at IS NULL AND m.parked_at IS NULL)
"""

# Rows made pending again ("retry now"): back into the queue, due now with a fresh retry budget;
# an entry left from before is reset the same way.
REQUEUE_SQL = """
INSERT INTO outbox_pending (
    id, partition, aggregate_type, aggregate_id, sequence, created_at, attempts, next_attempt_at)
SELECT id, partition, aggregate_type, aggregate_id, sequence, created_at, 0, statement_timestamp()
FROM outbox_message
WHERE id = ANY(%s) AND published_at IS NULL AND parked_at IS NULL
ON CONFLICT (id) DO UPDATE SET attempts = 0, next_attempt_at = EXCLUDED.next_attempt_at
"""

# Rows still to publish that have no entry: the relay would never see them.
ENQUEUE_MISSING_SQL = """
INSERT INTO outbox_pending (
    id, partition, aggregate_type, aggregate_id, sequence, created_at, attempts, next_attempt_at)
SELECT id, partition, aggregate_type, aggregate_id, sequence, created_at, attempts,
       next_attempt_at
FROM outbox_message
WHERE published_at IS NULL AND parked_at IS NULL
ON CONFLICT (id) DO NOTHING
"""


def requeue(ids: list[int], *, using: str = "default") -> None:
    """Queue the rows ``ids`` again, due now, attempts 0 (those still pending; others ignored)."""
    with connections[using].cursor() as cursor:
        cursor.execute(REQUEUE_SQL, [ids])


def drop_stale_entries(*, using: str = "default") -> int:
    """Remove queue entries whose outbox row is no longer pending; returns how many."""
    return _repair(DROP_STALE_SQL, "removed %d stale entries", using)


def enqueue_missing(*, using: str = "default") -> int:
    """Queue every pending outbox row that has no entry; returns how many (reads every row)."""
    return _repair(ENQUEUE_MISSING_SQL, "queued %d missing rows", using)


def _repair(sql: str, what: str, using: str) -> int:
    """Run one repair statement; a repair that changed anything is worth a warning (something
    outside outbox code wrote the table, or an upgrade is under way)."""
    with connections[using].cursor() as cursor:
        cursor.execute(sql)
        changed = cursor.rowcount
    if changed:
        logger.warning(f"outbox queue: {what} (database %s)", changed, using)
    return changed
