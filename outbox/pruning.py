"""Bounded deletes of old rows: many short ``DELETE ... LIMIT``-style statements, never one big one.

Each batch is one statement in its own (autocommit) transaction: it takes row locks on at most
``batch_size`` rows for milliseconds, so the relay, the workers and the web keep going while a
large backlog is trimmed; ``max_batches`` bounds one run (the next scheduled run continues).
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import connections

from outbox.models import OutboxMessage
from outbox.queue import drop_stale_entries

# Published (and never parked) rows published before the cutoff, oldest first. published_at has
# no index (the mark must not touch one, see OutboxMessage.Meta), so the walk goes by
# occurred_at, which a row's publication always follows: every row published before the cutoff
# occurred before it too (a producer clock ahead of the database's by a few seconds only defers
# a row to the next run; record_event refuses an occurred_at more than OUTBOX_MAX_FUTURE_SKEW
# ahead of the recording process's clock, so with producers' clocks in step with the database's
# no row outlives its retention by more; a producer whose clock runs ahead dates its events
# ahead by as much, and rows loaded in bulk bypass record_event). Pending and parked rows are
# never matched, however old; they are few, and a row pending since before the cutoff is walked
# past.
DELETE_PUBLISHED_SQL = """
DELETE FROM {table} WHERE id IN (
    SELECT id FROM {table}
    WHERE occurred_at < %s
      AND published_at IS NOT NULL AND published_at < %s AND parked_at IS NULL
    ORDER BY occurred_at
    LIMIT %s
)
"""
COUNT_PUBLISHED_SQL = """
SELECT count(*) FROM {table}
WHERE occurred_at < %s
  AND published_at IS NOT NULL AND published_at < %s AND parked_at IS NULL
"""


@dataclass
class Pruned:
    """Rows deleted by one bounded run on one table."""

    rows: int = 0
    batches: int = 0
    complete: bool = True  # False when max_batches stopped it with rows left to delete

    def __iadd__(self, other: "Pruned") -> "Pruned":
        self.rows += other.rows
        self.batches += other.batches
        self.complete = self.complete and other.complete
        return self


def delete_in_batches(
    sql: str, params: list, *, using: str, batch_size: int, max_batches: int
) -> Pruned:
    """Run ``sql`` (a DELETE whose last parameter is the batch size) until it deletes fewer rows
    than ``batch_size`` or ``max_batches`` ran."""
    result = Pruned()
    connection = connections[using]
    while result.batches < max_batches:
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, batch_size])
            deleted = cursor.rowcount
        result.batches += 1
        result.rows += deleted
        if deleted < batch_size:
            return result
    result.complete = False
    return result


def prune_published(
    *, before: datetime, using: str, batch_size: int, max_batches: int, dry_run: bool = False
) -> Pruned:
    """Delete outbox rows published before ``before`` (never pending or parked ones), and drop
    the relay's stale queue entries (``outbox.queue``)."""
    table = connections[using].ops.quote_name(OutboxMessage._meta.db_table)
    if dry_run:
        with connections[using].cursor() as cursor:
            cursor.execute(COUNT_PUBLISHED_SQL.format(table=table), [before, before])
            return Pruned(rows=int(cursor.fetchone()[0]))
    drop_stale_entries(using=using)
    return delete_in_batches(
        DELETE_PUBLISHED_SQL.format(table=table),
        [before, before],
        using=using,
        batch_size=batch_size,
        max_batches=max_batches,
    )
