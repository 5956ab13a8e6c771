"""Run a test bed's worker as a real process (test support, started by the tests).

    python -m outbox.consumer.tests.process command <service> <exchange> [consume_events args]
    python -m outbox.consumer.tests.process celery <service> <exchange>

The service is declared here (not in an app's ``ready()``), then the real entry point runs:
``call_command("consume_events", ...)`` — exactly what ``manage.py consume_events`` runs — or
Celery's ``worker_main`` with ``--consume-service``.
"""

import os
import sys


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fitness.settings.test")
    import django

    django.setup()
    from django.core.management import call_command

    from outbox.consumer.tests.support import declare_test_bed

    mode, name, exchange, *rest = argv
    declare_test_bed(name, exchange)
    if mode == "command":
        call_command("consume_events", "--service", name, *rest)
    else:
        from fitness.celery import app

        app.worker_main(
            [
                "worker",
                "--consume-service",
                name,
                "-Q",
                f"celery-{name}",
                "-c",
                "1",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
            ]
        )


if __name__ == "__main__":
    main(sys.argv[1:])
