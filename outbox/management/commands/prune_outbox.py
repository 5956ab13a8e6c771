"""``manage.py prune_outbox --older-than 30d``: delete published rows past the retention window."""

import re
from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from outbox.services import outbox_prune

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_age(text: str) -> timedelta:
    """Parse ``90s``, ``15m``, ``12h`` or ``30d`` into a timedelta."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text)
    if match is None:
        raise ValueError(f"{text!r} is not an age like 90s, 15m, 12h or 30d")
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


class Command(BaseCommand):
    help = "Delete published outbox rows older than --older-than; never pending or parked rows."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--older-than", required=True, help="Age such as 30d, 12h, 15m, 90s.")
        parser.add_argument("--batch-size", type=int, default=10_000, help="Rows per DELETE.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            age = parse_age(options["older_than"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        deleted = outbox_prune(older_than=age, batch_size=options["batch_size"])
        self.stdout.write(
            f"prune_outbox: deleted {deleted} published rows older than {options['older_than']}"
        )
