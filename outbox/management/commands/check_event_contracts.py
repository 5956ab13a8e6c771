"""``manage.py check_event_contracts``: fail when a published event version changed incompatibly."""

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from outbox.contracts import build_lock, check_contracts, read_lock, render_lock
from outbox.registry import all_event_types


def default_lock_path() -> str:
    """``OUTBOX_CONTRACTS_LOCK``, else ``docs/event-contracts.lock.json`` under ``BASE_DIR``."""
    configured = getattr(settings, "OUTBOX_CONTRACTS_LOCK", "")
    if configured:
        return str(configured)
    return str(Path(getattr(settings, "BASE_DIR", ".")) / "docs" / "event-contracts.lock.json")


class Command(BaseCommand):
    help = (
        "Compare every registered event type with the committed contract lock: fail on an "
        "incompatible change of a published version; --update records compatible changes."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--lock", help="the lock file (default: docs/event-contracts.lock.json)"
        )
        parser.add_argument(
            "--update",
            action="store_true",
            help="rewrite the lock when every change is compatible (new versions, optional fields)",
        )
        parser.add_argument(
            "--allow-removal",
            action="store_true",
            help="with --update: drop locked versions that are no longer registered",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["lock"] or default_lock_path())
        lock = read_lock(path)
        event_types = all_event_types()
        report = check_contracts(lock, event_types)
        for line in report.compatible + report.unlocked:
            self.stdout.write(f"  {line}")
        breaking = report.breaking
        if options["update"] and options["allow_removal"]:
            breaking = [line for line in breaking if "no longer registered" not in line]
        if breaking:
            raise CommandError(
                "incompatible change of a published event version (register a new version "
                "instead):\n  " + "\n  ".join(breaking)
            )
        if options["update"]:
            path.write_text(render_lock(build_lock(event_types)), encoding="utf-8")
            self.stdout.write(f"event contracts: wrote {path} ({len(event_types)} versions)")
            return
        if not report.ok:
            raise CommandError(f"the lock {path} is out of date: run with --update")
        self.stdout.write(f"event contracts: {len(event_types)} versions match {path}")
