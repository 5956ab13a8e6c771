"""``manage.py healthcheck --component relay|worker|web``: exit 0 when healthy (for containers)."""

import json
import sys
import urllib.error
import urllib.request
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from outbox.consumer.service import get_service
from outbox.exceptions import OutboxError
from outbox.health import OK, check_broker, check_database, health_timeout, overall


class Command(BaseCommand):
    help = (
        "Check what a process needs: relay = its database + the broker; worker = its service's "
        "database + the broker + its queue; web = GET /healthz. Exit 1 when unhealthy."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--component", required=True, choices=["relay", "worker", "web"])
        parser.add_argument("--database", default="default", help="relay: its database alias")
        parser.add_argument("--service", help="worker: the consumer service it runs")
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000/healthz", help="web: the health endpoint"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        component = options["component"]
        if component == "relay":
            result = overall(
                {"database": check_database(options["database"]), "broker": check_broker()}
            )
        elif component == "worker":
            if not options["service"]:
                raise CommandError("--component worker needs --service NAME")
            try:
                service = get_service(options["service"])
            except OutboxError as exc:
                raise CommandError(str(exc)) from exc
            result = overall(
                {
                    "database": check_database(service.database),
                    "broker": check_broker(queue=service.queue_name),
                }
            )
        else:
            result = self._web(options["url"])
        self.stdout.write(json.dumps(result))
        if result["status"] != OK:
            sys.exit(1)

    def _web(self, url: str) -> dict[str, str]:
        try:
            with urllib.request.urlopen(url, timeout=health_timeout() + 3) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 503 carries the failed checks
            try:
                return json.loads(exc.read())
            except ValueError:
                return {"status": "error", "web": f"error: HTTP {exc.code}"}
        except (OSError, ValueError) as exc:
            return {"status": "error", "web": f"error: {type(exc).__name__}"}
