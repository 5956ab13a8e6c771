"""The relay's database side: which rows to publish next, and recording what became of them.

Every statement runs in autocommit, i.e. its own short transaction: nothing holds row locks while
the relay waits for the broker. Exclusivity comes from the partition leases (see ``leases``), not
from ``FOR UPDATE SKIP LOCKED``, which would let two relays split one aggregate's events.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import psycopg
from django.db import connections

from outbox.publisher import Failure

# Walks the pending queue (outbox_pending, only rows still to publish) in id order and stops
# after `limit` matches, reading each entry's row from outbox_message by primary key (a LATERAL
# subquery kept apart by OFFSET 0: a plain join may be planned as a merge join over the whole
# table's primary key). A row is due once its backoff has passed, and a row never attempted
# (attempts = 0: new, or reset by "retry now") is due whatever next_attempt_at says: a row that
# is *not* due has failed an attempt, so the predecessor check only needs the retrying rows
# (attempts > 0), which outbox_pending_retrying_idx holds, normally none. (Without the
# "attempts = 0" arm, a new row whose next_attempt_at lay ahead of the clock, the database clock
# having been set back, would neither be claimed nor hold back its successor.)
# "OFFSET 0" keeps the NOT EXISTS a per-row subplan (one probe of the retrying index per scanned
# row) instead of letting the planner turn it into an anti-join: without fresh statistics (a
# burst of inserts before autoanalyze) that join was planned as a nested loop without index
# conditions, quadratic in the backlog; with an index that is usually empty, stale statistics
# can be far off (a broker outage puts every pending row in it), and a per-row probe with index
# conditions stays O(log n) whatever they say. statement_timestamp() is the clock Django's Now()
# uses for next_attempt_at (now() would be the start of an enclosing transaction).
# `exclude` lists the rows the relay still holds in memory (sent, or waiting for their mark): the
# scan still walks past them (they are pending), but a constant array is a hashed lookup and the
# cheaper filters run before the subplan, so they cost little.
# `skip_types`/`skip_ids` (pairwise: aggregate type and id) list the aggregates the relay holds
# enough rows of (pipeline.AGGREGATE_CLAIM_STOP), normally none: the scan walks past their
# backlog to other aggregates' rows instead of filling the batch with rows it would not take.
# NOT IN over a small subquery is a hashed subplan, one hash probe per scanned row (~0.2 us:
# 4 ms more for a claim passing over 20,000 rows of one aggregate); never an anti-join (NOT IN
# is not turned into one), so the scan still stops at the LIMIT.
# The outbox row's own state is checked per entry, before the LIMIT: an entry left behind by
# something that published, parked or deleted its row without dequeuing it (a relay of the
# previous release during an upgrade, a hand-made UPDATE) is skipped without taking a place in
# the batch, and never sent again; outbox.services.outbox_queue_repair removes such entries.
CLAIM_SQL = """
SELECT m.id, m.event_id, m.source, m.type, m.schema_version, m.aggregate_type, m.aggregate_id,
       m.sequence, m.correlation_id, m.causation_id, m.occurred_at, m.headers, m.payload,
       m.exchange, m.routing_key, m.partition
FROM outbox_pending AS p
CROSS JOIN LATERAL (
    SELECT r.id, r.event_id::text, r.source, r.type, r.schema_version, r.aggregate_type,
           r.aggregate_id, r.sequence, r.correlation_id, r.causation_id, r.occurred_at,
           r.headers::text, r.payload::text, r.exchange, r.routing_key, r.partition
    FROM outbox_message AS r
    WHERE r.id = p.id AND r.published_at IS NULL AND r.parked_at IS NULL
    OFFSET 0) AS m
WHERE p.partition = ANY(%(partitions)s)
  AND (p.attempts = 0 OR p.next_attempt_at <= statement_timestamp())
  AND p.id <> ALL(%(exclude)s::bigint[])
  AND (p.aggregate_type, p.aggregate_id) NOT IN (
    SELECT * FROM unnest(%(skip_types)s::text[], %(skip_ids)s::text[]))
  AND NOT EXISTS (
    SELECT 1 FROM outbox_pending AS e
    WHERE e.attempts > 0
      AND e.aggregate_type = p.aggregate_type AND e.aggregate_id = p.aggregate_id
      AND e.sequence < p.sequence
      AND e.next_attempt_at > statement_timestamp()
    OFFSET 0)
ORDER BY p.id
LIMIT %(limit)s
"""

# One statement, one snapshot: the rows leave the queue and are stamped published together.
# The UPDATE changes only published_at and attempts, which no index of outbox_message refers to,
# so it is heap-only (HOT): a new version of the row on its own page (fillfactor 45 leaves the
# room), no index entry. attempts counts every publish attempt, the successful one included.
# "published_at IS NULL" keeps a second mark (after a duplicate publish) from moving the time or
# the count.
# no_wait sets synchronous_commit off for this transaction only (set_config(..., true) is SET
# LOCAL): run in autocommit, the statement is its transaction, and the commit that follows it
# reads the setting, so the mark is one round trip instead of four (BEGIN, SET LOCAL, UPDATE,
# COMMIT). The EXISTS makes the UPDATE depend on it: a CTE nothing refers to is never run.
MARK_PUBLISHED_SQL = """
WITH no_wait AS (SELECT set_config('synchronous_commit', 'off', true)),
dequeued AS (DELETE FROM outbox_pending WHERE id = ANY(%(ids)s::bigint[]))
UPDATE outbox_message SET published_at = statement_timestamp(), attempts = attempts + 1
WHERE id = ANY(%(ids)s::bigint[]) AND published_at IS NULL AND EXISTS (SELECT FROM no_wait)
"""

# The outbox row keeps the history (attempts, last error, when it was parked); the queue entry
# gets the new attempt count and retry time (made anew if it was missing), or leaves the queue
# when the row is parked. A row already parked (by another relay, after a partition changed
# hands) stays parked: its late failure report is ignored.
RECORD_FAILURES_SQL = """
WITH failed AS (
    UPDATE outbox_message AS m SET
        attempts = m.attempts + 1,
        last_error = f.error,
        -- exponential backoff with "equal jitter": half fixed, half random, capped
        next_attempt_at = now() + make_interval(
            secs => least(%(base)s * power(2, m.attempts), %(cap)s) * (0.5 + random() / 2)),
        parked_at = CASE WHEN f.terminal OR m.attempts + 1 >= %(max_attempts)s THEN now() END
    FROM unnest(%(ids)s::bigint[], %(errors)s::text[], %(terminal)s::boolean[])
        AS f(id, error, terminal)
    WHERE m.id = f.id AND m.published_at IS NULL AND m.parked_at IS NULL
    RETURNING m.id, m.event_id, m.partition, m.aggregate_type, m.aggregate_id, m.sequence,
              m.created_at, m.attempts, m.next_attempt_at, m.parked_at
), parked AS (
    DELETE FROM outbox_pending AS p USING failed
    WHERE p.id = failed.id AND failed.parked_at IS NOT NULL
), retrying AS (
    INSERT INTO outbox_pending (
        id, partition, aggregate_type, aggregate_id, sequence, created_at, attempts,
        next_attempt_at)
    SELECT id, partition, aggregate_type, aggregate_id, sequence, created_at, attempts,
           next_attempt_at
    FROM failed WHERE parked_at IS NULL
    ON CONFLICT (id) DO UPDATE SET attempts = EXCLUDED.attempts,
        next_attempt_at = EXCLUDED.next_attempt_at
)
SELECT id, event_id, parked_at IS NOT NULL FROM failed
"""


@dataclass(slots=True)
class ClaimedRow:
    """An outbox row as the relay needs it: the columns it sends, the payload as JSON text.

    Not a model instance: building 500 of those, and decoding then re-encoding every payload,
    was a fifth of the relay's CPU. ``payload_json`` is the payload's text as stored (a ``json``
    column: what the producer wrote, compact; jsonb's spacing, ``{"a": 1}``, for rows older than
    migration 0009) and is sent as the body as it is.
    ``event_id`` is the UUID's text form, which is what goes on the wire (a ``uuid.UUID`` would
    be parsed here only to be turned back into text for every message).
    Attribute names match ``OutboxMessage``, so ``wire`` and ``publisher`` take either.
    """

    id: int
    event_id: str
    source: str
    type: str
    schema_version: int
    aggregate_type: str
    aggregate_id: str
    sequence: int
    correlation_id: str
    causation_id: str
    occurred_at: datetime
    headers: dict
    payload_json: str
    exchange: str
    routing_key: str
    partition: int


# psycopg's own timestamptz loader (C, in psycopg[binary]). Django registers a loader of its own
# on every connection, a Python subclass of psycopg's pure-Python one, to pin the time zone; the
# session's time zone is already UTC (Django sets it), so the C loader gives the same datetimes,
# at a third of the relay's decoding cost per claimed row (measured: 7-8 -> 3.4 us per row with
# the event id as text, see docs/benchmarks.md).
_TIMESTAMPTZ_OID = psycopg.postgres.types["timestamptz"].oid
_FAST_TIMESTAMPTZ = psycopg.postgres.adapters.get_loader(_TIMESTAMPTZ_OID, psycopg.pq.Format.TEXT)


# json's C scanner, called directly: json.loads() wraps it in two regex matches (whitespace
# around the value), type checks and a BOM check, more than half of its cost on a signed, traced
# row's headers (3.2 -> 1.3 us). jsonb's text form has no whitespace around the object, so a
# scan that ends at the end of the text is exactly what json.loads() returns; anything else (a
# stray space, an error) goes to json.loads(), which decides. A decoder of our own, not json's
# shared one (same C code, same result, but nothing else's state to share).
_SCAN = json.JSONDecoder().scan_once


def _headers(text: str) -> dict:
    """``json.loads(text)`` of a row's extra headers (jsonb's text form of an object)."""
    if text == "{}":
        return {}
    try:
        headers, end = _SCAN(text, 0)
    except (StopIteration, ValueError):
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return headers


def _row(values: tuple) -> ClaimedRow:
    row = ClaimedRow(*values)
    row.headers = _headers(row.headers)
    return row


def id_array(ids: Iterable[int]) -> str:
    """A bigint[] literal of ``ids``, for a ``::bigint[]`` parameter.

    psycopg's client-side binding adapts a Python list element by element (a dumper call and a
    quote per id): for the claim's exclusion list and the marks, a tenth of the relay's CPU.
    """
    return "{" + ",".join(map(str, ids)) + "}"


def claim_params(
    *,
    partitions: Iterable[int],
    limit: int,
    exclude: Iterable[int] = (),
    exclude_aggregates: Iterable[tuple[str, str]] = (),
) -> dict[str, object]:
    """The parameters of ``CLAIM_SQL`` (see ``claim_batch``)."""
    aggregates = list(exclude_aggregates)
    return {
        "partitions": list(partitions),
        "limit": limit,
        "exclude": id_array(exclude),
        "skip_types": [aggregate_type for aggregate_type, _ in aggregates],
        "skip_ids": [aggregate_id for _, aggregate_id in aggregates],
    }


def claim_batch(
    *,
    partitions: Iterable[int],
    limit: int,
    exclude: Iterable[int] = (),
    exclude_aggregates: Iterable[tuple[str, str]] = (),
    using: str = "default",
) -> list[ClaimedRow]:
    """The next rows to publish in ``partitions``: due, pending, oldest first.

    Due: never attempted, or its retry time has come. Always a fresh scan of pending rows in id
    order, never an ``id > last_seen`` cursor: ids are taken before commit, so a row with a
    smaller id can become visible after a larger one and a cursor would skip it for good. A row
    is held back while an earlier row of its aggregate is waiting for a retry, so it cannot
    overtake it. Earlier rows that are due are in the same batch or already held by the caller
    (per aggregate, ids grow with sequence), and ``pipeline.Pipeline`` sends them first.
    ``exclude``: ids of rows the caller already holds (in flight, or published and not yet
    marked), so a claim made while earlier rows are in flight brings only rows it does not have.
    ``exclude_aggregates``: ``(aggregate type, aggregate id)`` pairs whose rows are left out
    (the caller holds as many of them as it takes); they are claimed once the caller stops
    naming them, in order.
    """
    params = claim_params(
        partitions=partitions,
        limit=limit,
        exclude=exclude,
        exclude_aggregates=exclude_aggregates,
    )
    if not params["partitions"]:
        return []
    with connections[using].cursor() as cursor:
        # Django's cursor wraps psycopg's; the loader is registered on this cursor only.
        cursor.cursor.adapters.register_loader(_TIMESTAMPTZ_OID, _FAST_TIMESTAMPTZ)
        cursor.execute(CLAIM_SQL, params)
        return [_row(values) for values in cursor.fetchall()]


def mark_published(messages: list[ClaimedRow], *, using: str = "default") -> int:
    """Mark rows published, in one statement; returns how many rows changed.

    The commit does not wait for its WAL flush (``synchronous_commit = off``, for this
    transaction only): losing a mark in a PostgreSQL crash only means the rows are published
    again, duplicates the consumers' inboxes absorb — the guarantee is at-least-once anyway. It
    saves an fsync per batch on the relay's hot path, which is latency at low load. Called in
    autocommit (the relay's recorder), the statement is its own transaction; inside a caller's
    ``atomic()`` block, that transaction's commit does not wait either.
    """
    if not messages:
        return 0
    with connections[using].cursor() as cursor:
        cursor.execute(MARK_PUBLISHED_SQL, {"ids": id_array(m.id for m in messages)})
        return cursor.rowcount


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
