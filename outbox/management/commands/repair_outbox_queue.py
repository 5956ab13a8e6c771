"""``manage.py repair_outbox_queue``: put the relay's queue in step with the outbox rows."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from outbox.queue import drop_stale_entries, enqueue_missing


class Command(BaseCommand):
    help = (
        "Queue every pending outbox row missing from outbox_pending and drop entries whose row "
        "is published, parked or gone. Reads the whole outbox table: after an upgrade or a "
        "hand-made change, not on a schedule."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--database", default="default", help="Database alias.")

    def handle(self, *args: Any, **options: Any) -> None:
        using = options["database"]
        with transaction.atomic(using=using):
            queued = enqueue_missing(using=using)
            dropped = drop_stale_entries(using=using)
        self.stdout.write(
            f"repair_outbox_queue: {queued} pending rows queued, {dropped} stale entries dropped"
        )
