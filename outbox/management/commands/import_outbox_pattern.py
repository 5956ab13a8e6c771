"""``manage.py import_outbox_pattern [--dry-run]``: django-outbox-pattern's pending rows → outbox.

See outbox.outbox_pattern_import and docs/migrating-from-django-outbox-pattern.md.
"""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from outbox.outbox_pattern_import import (
    EXPIRED,
    FAILED,
    ImportReport,
    TableMissing,
    outbox_pattern_import,
)
from outbox.signing import SigningConfigError


class Command(BaseCommand):
    help = (
        "Move django-outbox-pattern's scheduled rows (table `published`) into the outbox, one "
        "transaction per batch, and mark them so its publisher never sends them. Safe to re-run."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Report what would be moved; write nothing."
        )
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per transaction.")
        parser.add_argument(
            "--database", default="default", help="Alias of the database holding both tables."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            report = outbox_pattern_import(
                using=options["database"],
                batch_size=options["batch_size"],
                dry_run=options["dry_run"],
            )
        except (TableMissing, SigningConfigError) as exc:
            # Nothing of the failing batch was written: fix the cause and run it again.
            raise CommandError(str(exc)) from exc
        for line in report_lines(report):
            self.stdout.write(line)


def report_lines(report: ImportReport) -> list[str]:
    """The report as an operator reads it: moved, then each reason rows were left alone."""
    verb = "would move" if report.dry_run else "moved"
    lines = [f"import_outbox_pattern: {verb} {report.moved} events to the outbox"]
    if report.already_in_outbox:
        lines.append(f"  already in the outbox (only marked as moved): {report.already_in_outbox}")
    for reason, count in sorted(report.skipped.items()):
        examples = ", ".join(report.examples.get(reason, []))
        lines.append(f"  skipped {count}: {reason} (e.g. {examples})")
    if any(reason not in (EXPIRED, FAILED) for reason in report.skipped):
        lines.append(
            "  rows skipped for another reason stay scheduled: fix the cause and run again, "
            "or its publisher sends them if it still runs"
        )
    lines.append(
        f"  not pending: {report.sent_by_it} sent by django-outbox-pattern, "
        f"{report.moved_before} moved by an earlier import"
    )
    return lines
