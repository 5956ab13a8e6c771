"""``manage.py consume_events --service payments``: a service's worker without Celery."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from outbox import metrics
from outbox.consumer.service import get_service
from outbox.consumer.worker import StandaloneWorker
from outbox.exceptions import OutboxError


class Command(BaseCommand):
    help = "Consume one service's queue (<service>.events) until stopped; same code as the worker."
    requires_system_checks: list[str] = []  # a restart-often worker, like relay_outbox

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--service", required=True, help="The consumer service's name.")
        parser.add_argument(
            "--exit-when-idle",
            type=float,
            metavar="SECONDS",
            help="Stop after this many seconds without a delivery (scripts, tests).",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            help="Serve Prometheus metrics on this port, path /metrics (env OUTBOX_METRICS_PORT).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            service = get_service(options["service"])
        except OutboxError as exc:
            raise CommandError(str(exc)) from exc
        port = metrics.port_from(options["metrics_port"])
        if port is not None:
            metrics.serve(port)
        worker = StandaloneWorker(service, exit_when_idle=options["exit_when_idle"])
        worker.install_signal_handlers()
        try:
            stats = worker.run()
        except OutboxError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"consume_events {service.name}: {dict(stats)}")
