"""The relay's database side: which rows to publish next, and recording what became of them.

Every statement runs in autocommit, i.e. its own short transaction: nothing holds row locks while
the relay waits for the broker. Exclusivity comes from the partition leases (see ``leases``), not
from ``FOR UPDATE SKIP LOCKED``, which would let two relays split one aggregate's events.
"""

from collections import defaultdict
from collections.abc import Iterable

from django.db import connections
from django.db.models import F
from django.db.models.functions import Now

from outbox.models import OutboxMessage
from outbox.publisher import Failure

# Walks the pending rows in id order (outbox_pending_id_idx) and stops after `limit` matches.
# "OFFSET 0" keeps the NOT EXISTS a per-row subplan (one probe of outbox_pending_aggregate_idx per
# scanned row) instead of letting the planner turn it into an anti-join: without fresh
# statistics (a burst of inserts before autoanalyze) that join was planned as a nested loop
# without index conditions, quadratic in the backlog. statement_timestamp() is the clock Django's
# Now() uses for next_attempt_at (now() would be the start of an enclosing transaction).
CLAIM_SQL = """
SELECT m.* FROM outbox_message AS m
WHERE m.published_at IS NULL AND m.parked_at IS NULL
  AND m.partition = ANY(%(partitions)s)
  AND m.next_attempt_at <= statement_timestamp()
  AND NOT EXISTS (
    SELECT 1 FROM outbox_message AS e
    WHERE e.published_at IS NULL AND e.parked_at IS NULL
      AND e.aggregate_type = m.aggregate_type AND e.aggregate_id = m.aggregate_id
      AND e.sequence < m.sequence
      AND e.next_attempt_at > statement_timestamp()
    OFFSET 0)
ORDER BY m.id
LIMIT %(limit)s
"""

# attempts counts every publish attempt, the successful one included.
RECORD_FAILURES_SQL = """
UPDATE outbox_message AS m SET
    attempts = m.attempts + 1,
    last_error = f.error,
    -- exponential backoff with "equal jitter": half fixed, half random, capped
    next_attempt_at = now() + make_interval(
        secs => least(%(base)s * power(2, m.attempts), %(cap)s) * (0.5 + random() / 2)),
    parked_at = CASE WHEN f.terminal OR m.attempts + 1 >= %(max_attempts)s THEN now() END
FROM unnest(%(ids)s::bigint[], %(errors)s::text[], %(terminal)s::boolean[])
    AS f(id, error, terminal)
WHERE m.id = f.id AND m.published_at IS NULL
RETURNING m.id, m.event_id, m.parked_at IS NOT NULL
"""


def claim_batch(
    *, partitions: Iterable[int], limit: int, using: str = "default"
) -> list[OutboxMessage]:
    """The next rows to publish in ``partitions``: due, pending, oldest first.

    Always a fresh scan of pending rows in id order, never an ``id > last_seen`` cursor: ids are
    taken before commit, so a row with a smaller id can become visible after a larger one and a
    cursor would skip it for good. A row is held back while an earlier row of its aggregate is
    waiting for a retry, so it cannot overtake it. Earlier rows that are due are in the same
    batch (per aggregate, ids grow with sequence), and ``plan_waves`` keeps them first.
    """
    partitions = list(partitions)
    if not partitions:
        return []
    return list(
        OutboxMessage.objects.using(using).raw(
            CLAIM_SQL, {"partitions": partitions, "limit": limit}
        )
    )


def plan_waves(messages: list[OutboxMessage]) -> list[list[OutboxMessage]]:
    """Split a batch so no aggregate has two rows in one confirm round.

    Wave *k* holds the *k*-th row of each aggregate. A wave is confirmed before the next one is
    sent, so when a row fails, its aggregate's later rows can be held back instead of
    overtaking it. A batch of distinct aggregates (the common case) is a single wave.
    """
    per_aggregate: dict[tuple[str, str], list[OutboxMessage]] = defaultdict(list)
    for message in messages:
        per_aggregate[(message.aggregate_type, message.aggregate_id)].append(message)
    waves: list[list[OutboxMessage]] = []
    for rows in per_aggregate.values():
        rows.sort(key=lambda m: m.sequence)
        for index, message in enumerate(rows):
            if index == len(waves):
                waves.append([])
            waves[index].append(message)
    for wave in waves:
        wave.sort(key=lambda m: m.id)
    return waves


def mark_published(messages: list[OutboxMessage], *, using: str = "default") -> int:
    """Mark rows published, in one UPDATE; returns how many rows changed."""
    if not messages:
        return 0
    return (
        OutboxMessage.objects.using(using)
        .filter(id__in=[m.id for m in messages], published_at__isnull=True)
        .update(published_at=Now(), attempts=F("attempts") + 1)
    )


def record_failures(
    failures: list[Failure],
    *,
    max_attempts: int,
    backoff_base: float,
    backoff_max: float,
    using: str = "default",
) -> list[tuple[int, str, bool]]:
    """Count a failed attempt on each row, schedule its retry, and park it when out of attempts.

    Returns ``(row id, event id, parked)`` for each row updated, for logging.
    """
    if not failures:
        return []
    params = {
        "ids": [f.message.id for f in failures],
        "errors": [f.error[:2000] for f in failures],
        "terminal": [f.terminal for f in failures],
        "max_attempts": max_attempts,
        "base": backoff_base,
        "cap": backoff_max,
    }
    with connections[using].cursor() as cursor:
        cursor.execute(RECORD_FAILURES_SQL, params)
        return [(row[0], str(row[1]), bool(row[2])) for row in cursor.fetchall()]
