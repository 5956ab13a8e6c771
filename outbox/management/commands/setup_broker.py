"""``manage.py setup_broker``: declare the broker topology (idempotent; see outbox.topology)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from outbox.broker import CONNECTION_ERRORS, close_quietly, connect
from outbox.conf import get_settings
from outbox.topology import contributors


class Command(BaseCommand):
    help = "Declare exchanges (and every contributed queue/binding) on RabbitMQ, idempotently."

    def handle(self, *args: Any, **options: Any) -> None:
        settings = get_settings()
        try:
            connection = connect(settings.broker_url, connect_timeout=settings.connect_timeout)
        except CONNECTION_ERRORS as exc:
            raise CommandError(f"cannot reach the broker: {exc}") from exc
        try:
            channel = connection.channel()
            for contributor in contributors():
                contributor(channel)
                self.stdout.write(f"declared: {contributor.__module__}.{contributor.__name__}")
        finally:
            close_quietly(connection)
        self.stdout.write(self.style.SUCCESS("broker topology is declared"))
