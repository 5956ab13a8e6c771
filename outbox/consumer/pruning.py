"""``prune_events``: published outbox rows, inbox entries and resolved dead letters past retention.

Run every hour by Celery beat (``fitness/celery.py``) and by hand with ``manage.py prune_events``.
Every database that holds an outbox and an inbox is pruned (each alias once per physical
database), in bounded batches (:mod:`outbox.pruning`). The cutoffs come from
:func:`outbox.retention.get_retention`, which refuses an inbox retention shorter than the replay
window: a replay never meets an inbox that forgot the event.

What is never deleted: pending or parked outbox rows, open dead letters, the per-aggregate
high-water marks (one small row per aggregate; dropping one would hide a superseded event).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connections, router
from django.utils import timezone

from outbox.consumer.models import DeadLetter, InboxEntry
from outbox.pruning import Pruned, delete_in_batches, prune_published
from outbox.retention import Retention, get_retention

# The services present in the inbox, one index probe each (a "loose index scan" over the
# (service, handled_at) index) instead of a DISTINCT over every row.
INBOX_SERVICES_SQL = """
WITH RECURSIVE services AS (
    (SELECT service FROM {table} ORDER BY service LIMIT 1)
    UNION ALL
    SELECT (SELECT service FROM {table} WHERE service > services.service
            ORDER BY service LIMIT 1)
    FROM services WHERE services.service IS NOT NULL
)
SELECT service FROM services WHERE service IS NOT NULL
"""
# Per service, oldest first, through the (service, handled_at) index.
DELETE_INBOX_SQL = """
DELETE FROM {table} WHERE id IN (
    SELECT id FROM {table} WHERE service = %s AND handled_at < %s
    ORDER BY handled_at LIMIT %s
)
"""
COUNT_INBOX_SQL = "SELECT count(*) FROM {table} WHERE handled_at < %s"
DELETE_DEAD_LETTERS_SQL = """
DELETE FROM {table} WHERE id IN (
    SELECT id FROM {table} WHERE state <> 'open' AND resolved_at < %s
    ORDER BY resolved_at LIMIT %s
)
"""
COUNT_DEAD_LETTERS_SQL = "SELECT count(*) FROM {table} WHERE state <> 'open' AND resolved_at < %s"


@dataclass
class DatabasePruned:
    """What one run deleted in one database (``aliases``: every alias that points at it)."""

    aliases: list[str]
    outbox: Pruned = field(default_factory=Pruned)
    inbox: Pruned = field(default_factory=Pruned)
    dead_letters: Pruned | None = None  # only in the database that holds the dead letters

    @property
    def complete(self) -> bool:
        parts = [self.outbox, self.inbox, *([self.dead_letters] if self.dead_letters else [])]
        return all(part.complete for part in parts)


@dataclass
class PruneReport:
    """A whole run: the cutoffs used and what each database gave up."""

    outbox_before: datetime
    inbox_before: datetime
    dead_letters_before: datetime
    databases: list[DatabasePruned]
    dry_run: bool = False

    @property
    def complete(self) -> bool:
        return all(database.complete for database in self.databases)


def physical_databases(aliases: Iterable[str] | None = None) -> list[list[str]]:
    """Group aliases that reach the same database (host, port, name): each is pruned once."""
    groups: dict[tuple, list[str]] = {}
    for alias in aliases or connections:
        settings = connections[alias].settings_dict
        key = (settings.get("HOST") or "", str(settings.get("PORT") or ""), settings["NAME"])
        groups.setdefault(key, []).append(alias)
    return list(groups.values())


def prune_events(
    *,
    aliases: Iterable[str] | None = None,
    retention: Retention | None = None,
    batch_size: int | None = None,
    max_batches: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PruneReport:
    """Prune every (or the given) database; ``dry_run`` only counts what would go."""
    retention = retention or get_retention()
    batch_size = batch_size or retention.batch_size
    max_batches = max_batches or retention.max_batches
    now = now or timezone.now()
    report = PruneReport(
        outbox_before=now - retention.outbox,
        inbox_before=now - retention.inbox,
        dead_letters_before=now - retention.dead_letters,
        databases=[],
        dry_run=dry_run,
    )
    dead_letter_alias = router.db_for_write(DeadLetter) or "default"
    bounds = {"batch_size": batch_size, "max_batches": max_batches, "dry_run": dry_run}
    for group in physical_databases(aliases):
        using = group[0]
        pruned = DatabasePruned(aliases=group)
        pruned.outbox = prune_published(before=report.outbox_before, using=using, **bounds)
        pruned.inbox = prune_inbox(before=report.inbox_before, using=using, **bounds)
        if dead_letter_alias in group:
            pruned.dead_letters = prune_dead_letters(
                before=report.dead_letters_before, using=dead_letter_alias, **bounds
            )
        report.databases.append(pruned)
    return report


def prune_inbox(
    *, before: datetime, using: str, batch_size: int, max_batches: int, dry_run: bool = False
) -> Pruned:
    """Delete inbox entries handled before ``before``, service by service, oldest first.

    ``max_batches`` bounds each service, so one busy service cannot starve the others.
    """
    connection = connections[using]
    table = connection.ops.quote_name(InboxEntry._meta.db_table)
    if dry_run:
        with connection.cursor() as cursor:
            cursor.execute(COUNT_INBOX_SQL.format(table=table), [before])
            return Pruned(rows=int(cursor.fetchone()[0]))
    with connection.cursor() as cursor:
        cursor.execute(INBOX_SERVICES_SQL.format(table=table))
        services = [row[0] for row in cursor.fetchall()]
    total = Pruned()
    for service in services:
        total += delete_in_batches(
            DELETE_INBOX_SQL.format(table=table),
            [service, before],
            using=using,
            batch_size=batch_size,
            max_batches=max_batches,
        )
    return total


def prune_dead_letters(
    *, before: datetime, using: str, batch_size: int, max_batches: int, dry_run: bool = False
) -> Pruned:
    """Delete dead letters requeued or discarded before ``before``; open ones always stay."""
    table = connections[using].ops.quote_name(DeadLetter._meta.db_table)
    if dry_run:
        with connections[using].cursor() as cursor:
            cursor.execute(COUNT_DEAD_LETTERS_SQL.format(table=table), [before])
            return Pruned(rows=int(cursor.fetchone()[0]))
    return delete_in_batches(
        DELETE_DEAD_LETTERS_SQL.format(table=table),
        [before],
        using=using,
        batch_size=batch_size,
        max_batches=max_batches,
    )


def describe(report: PruneReport) -> list[str]:
    """One line per database, for the command's output and the task's log."""
    verb = "would delete" if report.dry_run else "deleted"
    lines = []
    for database in report.databases:
        parts = [
            f"{database.outbox.rows} outbox rows published before "
            f"{report.outbox_before:%Y-%m-%d %H:%M}",
            f"{database.inbox.rows} inbox entries handled before "
            f"{report.inbox_before:%Y-%m-%d %H:%M}",
        ]
        if database.dead_letters is not None:
            parts.append(
                f"{database.dead_letters.rows} dead letters resolved before "
                f"{report.dead_letters_before:%Y-%m-%d %H:%M}"
            )
        more = "" if database.complete else " (batch limit reached: the next run continues)"
        lines.append(f"{'/'.join(database.aliases)}: {verb} {', '.join(parts)}{more}")
    return lines
