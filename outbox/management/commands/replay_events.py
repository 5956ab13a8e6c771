"""``manage.py replay_events --service <name> [filters]``: re-deliver retained events to one
service's queue. See docs/replay.md and :mod:`outbox.replay`."""

import sys
import uuid
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from outbox.consumer.service import get_service
from outbox.exceptions import OutboxError
from outbox.models import ReplayRun
from outbox.replay import (
    DEFAULT_BATCH_SIZE,
    ReplayFilters,
    TextProgress,
    parse_moment,
    replay_events,
)
from outbox.retention import inbox_memory_start


class Command(BaseCommand):
    help = (
        "Re-deliver retained (published) events to ONE service's queue, marked as replays, in "
        "per-aggregate order. Re-running the same command resumes an unfinished run."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--service", required=True, help="The consumer service to replay to.")
        parser.add_argument(
            "--since", help="occurred_at >= this: ISO date/time (naive = UTC) or an age (2h, 7d)."
        )
        parser.add_argument("--until", help="occurred_at < this (same formats as --since).")
        parser.add_argument(
            "--type", action="append", default=[], dest="types", help="Event type (repeatable)."
        )
        parser.add_argument(
            "--aggregate",
            action="append",
            default=[],
            dest="aggregates",
            help="'<aggregate type>:<id>' or '<id>' (repeatable).",
        )
        parser.add_argument(
            "--correlation",
            action="append",
            default=[],
            dest="correlations",
            help="Correlation id, i.e. one order's whole saga (repeatable).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be sent; send nothing."
        )
        parser.add_argument(
            "--reprocess",
            action="store_true",
            help="Ask the service to apply the events again (once per run), e.g. to rebuild a "
            "projection. Without it, events the service already handled are dropped by its inbox.",
        )
        parser.add_argument(
            "--resume", type=uuid.UUID, metavar="RUN_ID", help="Resume this unfinished run."
        )
        parser.add_argument(
            "--new-run",
            action="store_true",
            help="Start a new run even if an unfinished run has the same filters.",
        )
        parser.add_argument(
            "--limit", type=int, help="Send at most N events, leaving the run unfinished."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"Messages per publisher-confirm round (default {DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--database",
            action="append",
            default=[],
            dest="databases",
            help="Read only this database's outbox (repeatable; default: every database).",
        )
        parser.add_argument(
            "--runs", action="store_true", help="List the service's recent replay runs and exit."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            service = get_service(options["service"])
        except OutboxError as exc:
            raise CommandError(str(exc)) from exc
        if options["runs"]:
            self._list_runs(service.name)
            return
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        raw = {
            "since": options["since"],
            "until": options["until"],
            "types": sorted(options["types"]),
            "aggregates": sorted(options["aggregates"]),
            "correlations": sorted(options["correlations"]),
        }
        handled = {type_ for type_, _ in service.handled_types()}
        for type_ in options["types"]:
            if type_ not in handled:
                self.stderr.write(f"warning: {service.name} does not handle {type_}: skipped")
        if not raw["since"] and not options["reprocess"] and not options["resume"]:
            self.stderr.write(
                f"note: no --since: replaying events since {inbox_memory_start():%Y-%m-%d %H:%M} "
                f"UTC, what the inbox of {service.name} surely still remembers (older ones: "
                "--reprocess)"
            )
        progress = TextProgress(sys.stderr, f"replay -> {service.name}")
        try:
            filters = ReplayFilters(
                since=parse_moment(raw["since"]) if raw["since"] else None,
                until=parse_moment(raw["until"]) if raw["until"] else None,
                types=tuple(options["types"]),
                aggregates=tuple(options["aggregates"]),
                correlations=tuple(options["correlations"]),
            )
            result = replay_events(
                service,
                filters=filters,
                raw_filters=raw,
                reprocess=options["reprocess"],
                dry_run=options["dry_run"],
                databases=options["databases"] or None,
                batch_size=options["batch_size"],
                limit=options["limit"],
                resume=options["resume"],
                new_run=options["new_run"],
                progress=None if options["dry_run"] else progress,
            )
        except OutboxError as exc:
            raise CommandError(str(exc)) from exc
        if result.dry_run:
            for type_, count in sorted(result.per_type.items()):
                self.stdout.write(f"  {type_}: {count}")
        self.stdout.write(result.summary())

    def _list_runs(self, service: str) -> None:
        for run in ReplayRun.objects.filter(service=service).order_by("-created_at")[:20]:
            state = f"finished {run.finished_at:%Y-%m-%d %H:%M:%S}" if run.finished_at else "open"
            mode = "reprocess" if run.reprocess else "replay"
            self.stdout.write(
                f"{run.pk}  {run.created_at:%Y-%m-%d %H:%M:%S}  {mode:9}  {state:28}  "
                f"sent {run.sent}/{run.matched - run.skipped}  {run.filters.get('given', {})}"
            )
