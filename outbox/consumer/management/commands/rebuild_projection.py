"""``manage.py rebuild_projection <service> [--wait]``: wipe a service's projection and inbox,
then rebuild it from the retained events through replay. See docs/replay.md."""

import sys
import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from outbox.consumer.reset import handled_count, service_reset
from outbox.consumer.service import all_services, get_service
from outbox.exceptions import OutboxError
from outbox.replay import DEFAULT_BATCH_SIZE, ReplayFilters, TextProgress, replay_events


class Command(BaseCommand):
    help = (
        "Wipe a service's projection tables and inbox rows (one transaction), then replay every "
        "retained event it handles to its queue; its running worker rebuilds the projection."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("service", nargs="?", help="A service that registered on_reset.")
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Wait until the service's worker has handled every replayed event.",
        )
        parser.add_argument(
            "--timeout", type=float, default=600.0, help="Seconds --wait waits (default 600)."
        )
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
        parser.add_argument(
            "--list", action="store_true", help="List the services that can be rebuilt."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"] or not options["service"]:
            names = [s.name for s in all_services() if s.reset_hooks]
            self.stdout.write("services with a reset hook: " + (", ".join(names) or "none"))
            return
        try:
            service = get_service(options["service"])
            reset = service_reset(service)
            self.stdout.write(
                f"rebuild_projection {service.name}: projection wiped, {reset.inbox_rows} inbox "
                f"rows and {reset.marks} sequence marks deleted"
            )
            result = replay_events(
                service,
                # Pending rows too: an event can be applied before the relay marks its row.
                filters=ReplayFilters(include_pending=True),
                # A rebuild is always a run of its own (an interrupted one: rebuild again).
                new_run=True,
                # Its inbox rows were just deleted: every retained event is new to the service.
                inbox_wiped=True,
                batch_size=options["batch_size"],
                progress=TextProgress(sys.stderr, f"replay -> {service.name}"),
                collect_ids=options["wait"],
            )
        except OutboxError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(result.summary())
        if options["wait"]:
            self._wait(service, result.sent_event_ids, options["timeout"])

    def _wait(self, service: Any, event_ids: list, timeout: float) -> None:
        progress = TextProgress(sys.stderr, f"{service.name} handled")
        deadline = time.monotonic() + timeout
        while True:
            done = handled_count(service, event_ids)
            progress(done, len(event_ids))
            if done >= len(event_ids):
                self.stdout.write(f"rebuild_projection {service.name}: {done} events applied")
                return
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"{len(event_ids) - done} of {len(event_ids)} replayed events not handled "
                    f"after {timeout:.0f}s: is the {service.name} worker running? "
                    f"(look in {service.dead_letter_queue} too)"
                )
            time.sleep(0.5)
