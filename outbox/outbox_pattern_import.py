"""Move django-outbox-pattern's still-scheduled rows into our outbox (``import_outbox_pattern``).

One transaction per batch: the batch's rows of its ``published`` table are locked (``FOR
UPDATE``: a running publisher of the package holds the rows it is sending, and we wait for its
verdict instead of moving a row it just sent), recorded in our outbox with their own id as event
id, and given ``status = 3`` so its publisher never sends them. A crash anywhere rolls back the
whole batch: a row is either moved *and* marked, or neither. A second run finds nothing
scheduled; a row whose event is already in our outbox (its status reset by hand, say) is only
marked, never recorded twice (the event id is unique in ``outbox_message``).

Rows that cannot become one of our events (see :mod:`outbox.outbox_pattern` for the mapping) are
left as they are and reported with the reason, as are expired and failed rows.
"""

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connections, transaction

from outbox import outbox_pattern as dop
from outbox.exceptions import InvalidPayload, OutboxError
from outbox.recording import (
    RESERVED_HEADER_PREFIXES,
    record_event,
    validate_occurred_at,
    validate_payload,
)
from outbox.registry import EventType

EXAMPLES_PER_REASON = 3
EXPIRED = "expired: its publisher never sends a row past expires_at"
FAILED = "failed: its publisher gave up on it"

SCHEDULED_SQL = f"""
SELECT id, destination, body::text, added, headers::text
FROM {dop.TABLE}
WHERE status = {dop.STATUS_SCHEDULE} AND expires_at >= now() AND NOT (id = ANY(%(skip)s::uuid[]))
ORDER BY added, id
LIMIT %(limit)s
"""
LOCK_SUFFIX = "FOR UPDATE"
MARK_MOVED_SQL = (
    f"UPDATE {dop.TABLE} SET status = {dop.STATUS_MOVED} WHERE id = ANY(%(ids)s::uuid[])"
)
ALREADY_IN_OUTBOX_SQL = "SELECT event_id FROM outbox_message WHERE event_id = ANY(%(ids)s::uuid[])"
LEFT_ALONE_SQL = f"""
SELECT CASE
         WHEN status = {dop.STATUS_FAILED} THEN 'failed'
         WHEN status = {dop.STATUS_SCHEDULE} AND expires_at < now() THEN 'expired'
         WHEN status = {dop.STATUS_SUCCEEDED} THEN 'sent'
         WHEN status = {dop.STATUS_MOVED} THEN 'moved'
       END AS state,
       count(*),
       (array_agg(id::text ORDER BY added, id))[1:{EXAMPLES_PER_REASON}]
FROM {dop.TABLE}
WHERE status <> {dop.STATUS_SCHEDULE} OR expires_at < now()
GROUP BY 1
"""


class TableMissing(OutboxError):
    """The database has no ``published`` table: django-outbox-pattern was never migrated there."""


@dataclass
class ImportReport:
    """What one run moved, and what it left alone and why (row ids as examples)."""

    dry_run: bool
    moved: int = 0
    already_in_outbox: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    sent_by_it: int = 0
    moved_before: int = 0

    def skip(self, reason: str, row_id: str, count: int = 1) -> None:
        """Count ``count`` rows left alone for ``reason``; keep a few ids to look at."""
        self.skipped[reason] += count
        examples = self.examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(row_id)


@dataclass(frozen=True)
class MappedRow:
    """A row of its table as one of our events, ready for ``record_event``."""

    row_id: uuid.UUID
    event_id: uuid.UUID
    event_type: EventType
    payload: dict
    correlation_id: str
    headers: dict[str, str | int | bool]
    occurred_at: datetime


def outbox_pattern_import(
    *, using: str = "default", batch_size: int = 500, dry_run: bool = False
) -> ImportReport:
    """Move every scheduled, unexpired row of its table into our outbox; report what happened.

    ``dry_run`` reads the same rows without locking or writing anything: the report says what a
    real run would move now.
    """
    _check_table(using)
    report = ImportReport(dry_run=dry_run)
    skip: list[uuid.UUID] = []  # unmappable rows stay scheduled: never select them again
    while True:
        with transaction.atomic(using=using):
            rows = _scheduled(using, skip=skip, limit=batch_size, lock=not dry_run)
            if not rows:
                break
            mapped = _map_rows(rows, report, skip)
            _move(mapped, report, using=using, dry_run=dry_run)
        if dry_run:
            skip.extend(row.row_id for row in mapped)
    _count_left_alone(report, using)
    return report


def _check_table(using: str) -> None:
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [dop.TABLE])
        if cursor.fetchone()[0] is None:
            raise TableMissing(
                f"database {using!r} has no table {dop.TABLE!r} "
                "(django-outbox-pattern's table): nothing to import"
            )


def _scheduled(using: str, *, skip: list[uuid.UUID], limit: int, lock: bool) -> list[tuple]:
    sql = SCHEDULED_SQL + (LOCK_SUFFIX if lock else "")
    with connections[using].cursor() as cursor:
        cursor.execute(sql, {"skip": skip, "limit": limit})
        return cursor.fetchall()


def _map_rows(rows: list[tuple], report: ImportReport, skip: list[uuid.UUID]) -> list[MappedRow]:
    mapped = []
    for row in rows:
        try:
            mapped.append(map_row(*row))
        except dop.Unmappable as exc:
            skip.append(row[0])
            report.skip(str(exc), str(row[0]))
        except InvalidPayload as exc:
            skip.append(row[0])
            # Counted by what is wrong, not by each row's values (a clock ahead: every row's).
            report.skip(exc.summary, str(row[0]))
    return mapped


def map_row(
    row_id: uuid.UUID, destination: str, body: str, added: datetime, headers_json: str
) -> MappedRow:
    """One scheduled row as our event; :class:`~outbox.outbox_pattern.Unmappable` says why not."""
    headers = json.loads(headers_json) if headers_json else {}
    if not isinstance(headers, dict):
        headers = {}
    event_id = dop.message_id(headers, fallback=row_id)
    event_type = dop.event_type_for(dop.parse_destination(destination).routing_key)
    payload = json.loads(body)
    validate_payload(event_type, payload)
    # Checked here rather than left to record_event, so a row dated ahead of our clock is
    # reported and left scheduled instead of failing its whole batch.
    validate_occurred_at(event_type, added)
    return MappedRow(
        row_id=row_id,
        event_id=event_id,
        event_type=event_type,
        payload=payload,
        correlation_id=dop.correlation_id(headers, event_id),
        headers=_amqp_headers(headers),
        occurred_at=added,
    )


def _amqp_headers(headers: dict[str, Any]) -> dict[str, str | int | bool]:
    """Its headers as our extra AMQP headers: scalars kept, anything else as JSON text.

    The ``dop-*`` headers travel on: they tell where the event came from.
    """
    cleaned: dict[str, str | int | bool] = {}
    for key, value in headers.items():
        # Never shadow our envelope (or whatever else record_event reserves).
        if str(key).lower().startswith(RESERVED_HEADER_PREFIXES) or value is None:
            continue
        if isinstance(value, str | int | bool):
            cleaned[str(key)] = value
        else:
            cleaned[str(key)] = json.dumps(value, separators=(",", ":"))
    return cleaned


def _move(mapped: list[MappedRow], report: ImportReport, *, using: str, dry_run: bool) -> None:
    """Record the batch's events (skipping those already in our outbox) and mark the rows."""
    with connections[using].cursor() as cursor:
        cursor.execute(ALREADY_IN_OUTBOX_SQL, {"ids": [row.event_id for row in mapped]})
        present = {row[0] for row in cursor.fetchall()}
    for row in mapped:
        if row.event_id in present:
            report.already_in_outbox += 1
            continue
        present.add(row.event_id)  # two rows with one dop-msg-id: the first one wins
        report.moved += 1
        if not dry_run:
            record_event(
                row.event_type,
                # No order in its table: each event is an aggregate of its own (sequence 1).
                aggregate_id=str(row.event_id),
                payload=row.payload,
                correlation_id=row.correlation_id,
                headers=row.headers,
                using=using,
                event_id=row.event_id,
                occurred_at=row.occurred_at,
            )
    if not dry_run and mapped:
        with connections[using].cursor() as cursor:
            cursor.execute(MARK_MOVED_SQL, {"ids": [row.row_id for row in mapped]})


def _count_left_alone(report: ImportReport, using: str) -> None:
    with connections[using].cursor() as cursor:
        cursor.execute(LEFT_ALONE_SQL)
        for state, count, examples in cursor.fetchall():
            if state == "sent":
                report.sent_by_it = count
            elif state == "moved":
                # This run's rows carry the mark too (a dry run marks nothing).
                this_run = 0 if report.dry_run else report.moved + report.already_in_outbox
                report.moved_before = count - this_run
            elif state in ("expired", "failed"):
                reason = EXPIRED if state == "expired" else FAILED
                report.skipped[reason] += count
                report.examples[reason] = list(examples)
