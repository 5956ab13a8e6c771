"""``manage.py collect_dead_letters [--service S ...]``: ``<service>.dead`` -> the admin's table."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from outbox.consumer.dead_letters import collect_services
from outbox.consumer.service import all_services, get_service
from outbox.exceptions import OutboxError


class Command(BaseCommand):
    help = (
        "Move the messages of each service's dead-letter queue (<service>.dead) into the dead "
        "letters table (insert, commit, then ack: nothing is lost, nothing stored twice)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--service",
            action="append",
            dest="services",
            metavar="NAME",
            help="A consumer service (repeatable); default: every declared service.",
        )
        parser.add_argument(
            "--limit", type=int, help="At most this many messages per service (default: all)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            services = [get_service(name) for name in options["services"] or []] or all_services()
        except OutboxError as exc:
            raise CommandError(str(exc)) from exc
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        failed = []
        results = collect_services(services, limit=options["limit"])
        for service, result in zip(services, results, strict=True):
            line = (
                f"{service.name}: {result.taken} taken from {service.dead_letter_queue}, "
                f"{result.stored} new ({result.reduced} in reduced form), "
                f"{result.duplicates} already stored"
            )
            if result.problem:
                failed.append(service.name)
                self.stderr.write(f"{line}; {result.problem}")
            else:
                self.stdout.write(line)
        if failed:
            raise CommandError(f"could not collect the dead letters of {', '.join(failed)}")
