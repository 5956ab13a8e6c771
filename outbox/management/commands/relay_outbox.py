"""``manage.py relay_outbox``: publish outbox rows to RabbitMQ (see outbox.relay)."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from outbox import metrics
from outbox.conf import get_settings
from outbox.partitioning import parse_partitions
from outbox.relay import Relay, RelayConnectionError


class Command(BaseCommand):
    help = "Publish committed outbox rows to RabbitMQ with publisher confirms, until stopped."
    # A worker, restarted often: system checks (which import every URLconf and view) belong to
    # deploys and the web process, and would only slow the relay's restart after a crash.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--once", action="store_true", help="Drain what is due now, then exit (scripts, tests)."
        )
        parser.add_argument("--batch-size", type=int, help="Rows per batch (OUTBOX_BATCH_SIZE).")
        parser.add_argument(
            "--database",
            default="default",
            help="Database alias whose outbox to relay (one relay set per physical database).",
        )
        parser.add_argument(
            "--partitions",
            help='Only lease these partitions, e.g. "0-7" or "0,2,4" (default: all).',
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            help="Serve Prometheus metrics on this port, path /metrics (env OUTBOX_METRICS_PORT).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        settings = get_settings()
        partitions = None
        if options["partitions"]:
            try:
                partitions = parse_partitions(options["partitions"], settings.partitions)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        port = metrics.port_from(options["metrics_port"])
        if port is not None:
            metrics.serve(port)
        relay = Relay(
            batch_size=options["batch_size"],
            partitions=partitions,
            once=options["once"],
            using=options["database"],
        )
        try:
            published = relay.run(install_signal_handlers=True)
        except RelayConnectionError as exc:
            raise CommandError(f"relay could not connect: {exc}") from exc
        self.stdout.write(f"relay_outbox: {published} events published")
