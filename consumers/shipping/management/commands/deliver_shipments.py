"""``python manage.py deliver_shipments [--loop]``: mark due shipments delivered.

The shipping service's clock. ``--loop`` keeps it running (the Procfile's ``shipping-clock``);
without it, one pass (cron, tests).
"""

import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from consumers.shipping.services import shipment_deliver_due


class Command(BaseCommand):
    help = "Deliver dispatched shipments whose delivery time has come."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="keep running")
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between passes")

    def handle(self, *args: Any, **options: Any) -> None:
        stop = {"now": False}

        def request_stop(signum: int, frame: Any) -> None:
            stop["now"] = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        while True:
            close_old_connections()
            delivered = shipment_deliver_due()
            if delivered:
                self.stdout.write(f"shipping: delivered {delivered} shipment(s)")
            if not options["loop"] or stop["now"]:
                return
            time.sleep(options["interval"])
