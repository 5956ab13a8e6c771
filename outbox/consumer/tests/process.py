"""Run a test bed's worker as a real process (test support, started by the tests).

    python -m outbox.consumer.tests.process command <service> <exchange> [consume_events args]
    python -m outbox.consumer.tests.process celery <service> <exchange> [worker args]
    python -m outbox.consumer.tests.process import_outbox_pattern <service> <exchange> [args]

The service is declared here (not in an app's ``ready()``), then the real entry point runs:
``call_command("consume_events", ...)`` — exactly what ``manage.py consume_events`` runs — or
Celery's ``worker_main`` with ``--consume-service``, or ``import_outbox_pattern`` (which needs
the bed's event types registered to map django-outbox-pattern's rows).
"""

import os
import sys
from pathlib import Path

# A "bug" a test can fix while the worker runs: while the file named here exists, the handler
# fails (after recording its outgoing event, so the rollback is exercised); deleting it is the fix.
BUG_FLAG_ENV = "CTEST_BUG_WHILE_FILE_EXISTS"


def bug_while_file_exists(flag: Path):
    def behaviour(event, call_number):
        if flag.exists():
            raise RuntimeError(f"handler bug (flag {flag.name} present)")

    return behaviour


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fitness.settings.test")
    import django

    django.setup()
    from django.core.management import call_command

    from outbox.consumer.tests.support import declare_test_bed

    mode, name, exchange, *rest = argv
    bed = declare_test_bed(name, exchange)
    if os.environ.get(BUG_FLAG_ENV):
        bed.behaviour = bug_while_file_exists(Path(os.environ[BUG_FLAG_ENV]))
    if mode == "command":
        call_command("consume_events", "--service", name, *rest)
    elif mode == "import_outbox_pattern":
        call_command("import_outbox_pattern", *rest)
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
                *rest,
            ]
        )


if __name__ == "__main__":
    main(sys.argv[1:])
