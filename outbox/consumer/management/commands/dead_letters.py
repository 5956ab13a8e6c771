"""``manage.py dead_letters list|requeue|discard``: an operator's dead-letter tool.

    manage.py dead_letters list [--service S] [--state open] [--type T]
    manage.py dead_letters requeue --service S (--id N ... | --all) [--type T] [--note ...]
    manage.py dead_letters discard --service S (--id N ... | --all) [--type T] --reason "..."

``--all`` first collects what is still in ``<service>.dead`` (so "all" means all), then acts on
every open dead letter of the service (of one type with ``--type``).
"""

import getpass
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import QuerySet

from outbox.consumer.dead_letters import ResolveResult, collect_services, discard, requeue
from outbox.consumer.models import DeadLetter
from outbox.consumer.service import get_service
from outbox.exceptions import OutboxError

State = DeadLetter.State


class Command(BaseCommand):
    help = "List, requeue or discard dead letters (see docs/dead-letters.md)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = actions.add_parser("list", help="Show dead letters (newest first).")
        listing.add_argument("--service", help="Only this service.")
        listing.add_argument(
            "--state",
            choices=[*State.values, "all"],
            default=State.OPEN,
            help="Default: open.",
        )
        listing.add_argument("--type", help="Only this event type.")
        listing.add_argument("--limit", type=int, default=50, help="At most this many (50).")
        for name, text in (
            ("requeue", "Send open dead letters back to <service>.events after a fix."),
            ("discard", "Give up on open dead letters, recording why."),
        ):
            action = actions.add_parser(name, help=text)
            action.add_argument("--service", required=True, help="The consumer service.")
            which = action.add_mutually_exclusive_group(required=True)
            which.add_argument(
                "--id", type=int, action="append", dest="ids", help="A dead letter id (repeatable)."
            )
            which.add_argument(
                "--all", action="store_true", help="Every open dead letter of the service."
            )
            action.add_argument("--type", help="With --all: only this event type.")
            action.add_argument(
                "--by",
                default=f"cli:{_user()}",
                help="Who does it (recorded; default cli:<login>).",
            )
            if name == "requeue":
                action.add_argument("--note", default="", help="Recorded with the requeue.")
                action.add_argument(
                    "--force",
                    action="store_true",
                    help="Requeue even events older than the inbox retention.",
                )
            else:
                action.add_argument("--reason", required=True, help="Why (recorded).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            self._list(options)
            return
        try:
            service = get_service(options["service"])
        except OutboxError as exc:
            raise CommandError(str(exc)) from exc
        if options["all"]:
            (collected,) = collect_services([service])
            if collected.error:
                raise CommandError(
                    f"could not collect {service.dead_letter_queue}: {collected.error}"
                )
            if collected.left:  # not in the table, so not requeueable: the rest still is
                self.stderr.write(f"warning: {service.dead_letter_queue}: {collected.problem}")
            rows = DeadLetter.objects.filter(service=service.name, state=State.OPEN)
            if options["type"]:
                rows = rows.filter(event_type=options["type"])
            ids = list(rows.order_by("dead_at", "id").values_list("id", flat=True))
        else:
            ids = options["ids"]
            others = DeadLetter.objects.filter(id__in=ids).exclude(service=service.name)
            if others.exists():
                wrong = ", ".join(str(pk) for pk in others.values_list("id", flat=True))
                raise CommandError(f"dead letter(s) {wrong} do not belong to {service.name}")
        if options["action"] == "requeue":
            result = requeue(ids, by=options["by"], note=options["note"], force=options["force"])
            verb = "requeued"
        else:
            try:
                result = discard(ids, by=options["by"], reason=options["reason"])
            except OutboxError as exc:
                raise CommandError(str(exc)) from exc
            verb = "discarded"
        self._report(service.name, verb, result)

    def _report(self, service: str, verb: str, result: ResolveResult) -> None:
        for pk, why in result.skipped.items():
            self.stderr.write(f"  #{pk} skipped: {why}")
        self.stdout.write(
            f"dead_letters {service}: {verb} {len(result.done)}, skipped {len(result.skipped)}"
        )
        if result.skipped and not result.done:
            raise CommandError(f"nothing {verb}")

    def _list(self, options: dict[str, Any]) -> None:
        rows: QuerySet = DeadLetter.objects.order_by("-dead_at", "-id")
        if options["service"]:
            rows = rows.filter(service=options["service"])
        if options["state"] != "all":
            rows = rows.filter(state=options["state"])
        if options["type"]:
            rows = rows.filter(event_type=options["type"])
        shown = 0
        for row in rows[: options["limit"]]:
            shown += 1
            self.stdout.write(
                f"#{row.pk} {row.service} {row.state} {row.dead_at:%Y-%m-%d %H:%M:%S} "
                f"{row.event_type or '?'} {row.event_id or '(no id)'} subject={row.subject} "
                f"correlation={row.correlation_id} attempts={row.attempts}\n    {row.reason}"
                + (
                    f"\n    {row.state} by {row.resolved_by} at {row.resolved_at:%Y-%m-%d %H:%M}"
                    f": {row.resolution_note}"
                    if row.resolved_at
                    else ""
                )
            )
        self.stdout.write(f"{shown} dead letter(s) shown")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"
