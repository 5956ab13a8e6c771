"""``manage.py prune_events``: outbox rows, inbox entries and dead letters past their retention."""

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from outbox.consumer.pruning import describe, prune_events


class Command(BaseCommand):
    help = (
        "Delete published outbox rows older than OUTBOX_RETENTION_DAYS, inbox entries older than "
        "OUTBOX_INBOX_RETENTION_DAYS and resolved dead letters older than "
        "OUTBOX_DEAD_LETTER_RETENTION_DAYS, in bounded batches, in every database. Never pending "
        "or parked outbox rows, never open dead letters."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--database",
            action="append",
            dest="databases",
            metavar="ALIAS",
            help="Only this database alias (repeatable); default: every alias, once per database.",
        )
        parser.add_argument("--batch-size", type=int, help="Rows per DELETE statement.")
        parser.add_argument(
            "--max-batches", type=int, help="DELETE statements per table (and service) per run."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("batch_size", "max_batches"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        for alias in options["databases"] or []:
            if alias not in connections:
                raise CommandError(f"unknown database alias {alias!r}")
        try:
            report = prune_events(
                aliases=options["databases"],
                batch_size=options["batch_size"],
                max_batches=options["max_batches"],
                dry_run=options["dry_run"],
            )
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        for line in describe(report):
            self.stdout.write(f"prune_events: {line}")
