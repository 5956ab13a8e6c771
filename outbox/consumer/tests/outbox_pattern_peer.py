"""django-outbox-pattern as the shop migrating to us runs it, on the tests' database and vhost.

The shop never imports the package (it is a test and bench dependency only), so its side runs in
child processes with its own minimal project, ``bench.dop_settings`` (the benchmark's peer), on
pytest's test database: its ``published`` table sits next to our ``outbox_message``, as in a shop
that has both installed. Rows are created through its own API (``Published.objects.create``,
whose ``save()`` computes its headers) and sent by its own ``publish`` command, over STOMP.

Test side: :func:`peer_migrate`, :func:`peer_create`, :func:`peer_pending`, :class:`Publisher`.
Child side: ``python -m outbox.consumer.tests.outbox_pattern_peer create|pending`` (JSON on
stdin and stdout).
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from kombu.utils.url import parse_url

from outbox.conf import get_settings
from outbox.tests.helpers import BASE_DIR, database_url
from outbox.tests.processes import ChildProcess

STATUS_SUCCEEDED = 2  # its StatusChoice.SUCCEEDED


_migrated: set[str] = set()


@pytest.fixture
def outbox_pattern(django_db_blocker) -> Iterator[dict[str, str]]:
    """Its table on the test database (migrated once), empty; yields its processes' environment.

    Also enables RabbitMQ's STOMP plugin, which it needs to send anything (idempotent; it does
    not restart the broker). Needs a ``transactional_db`` test: its processes must see commits.
    """
    from bench.dop import ensure_stomp

    ensure_stomp()
    with django_db_blocker.unblock():
        vhost = parse_url(get_settings().broker_url).get("virtual_host") or "/"
        env = peer_env(database_url(), vhost)
        if env["DOP_DATABASE_URL"] not in _migrated:
            peer_migrate(env)
            _migrated.add(env["DOP_DATABASE_URL"])
        _empty_table()
        yield env
        _empty_table()


def _empty_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM published")


def peer_env(database_url: str, broker_vhost: str) -> dict[str, str]:
    """The environment of its processes: its own settings, our test database and vhost."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.dop_settings",
        "DOP_DATABASE_URL": database_url,
        "DOP_STOMP_VHOST": broker_vhost,
        "PYTHONPATH": str(BASE_DIR),
        "PYTHONUNBUFFERED": "1",
    }


def _run(env: dict[str, str], *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=BASE_DIR, env=env, input=stdin, capture_output=True, text=True
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def peer_migrate(env: dict[str, str]) -> None:
    """Create its tables (``published``, ``received``) with its own migrations; idempotent."""
    _run(env, "-m", "django", "migrate", "django_outbox_pattern", "--noinput")


def peer_create(env: dict[str, str], rows: list[dict[str, Any]]) -> list[str]:
    """Create rows through its model, one ``save()`` each, in order; returns their ids.

    A row is ``{"destination", "body"}`` plus optionally ``"version"`` and ``"state"``:
    ``"expired"`` (``expires_at`` an hour ago) or ``"failed"`` (what its publisher leaves after
    its retries ran out).
    """
    out = _run(
        env, "-m", "outbox.consumer.tests.outbox_pattern_peer", "create", stdin=json.dumps(rows)
    )
    return json.loads(out)


def peer_pending(env: dict[str, str]) -> int:
    """How many rows its publisher would send now (its own queryset)."""
    return int(_run(env, "-m", "outbox.consumer.tests.outbox_pattern_peer", "pending"))


class Publisher(ChildProcess):
    """Its ``publish`` command as a child process; stop it with :meth:`stop` (SIGTERM ends its
    process, no transaction of its own left open in tests)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        super().__init__(
            [sys.executable, "-m", "django", "publish"], log_path=log, env=env, name="publish"
        )

    def wait_until_sent(self, cursor: Any, ids: list[str], timeout: float = 30.0) -> None:
        """Wait until its table says every row of ``ids`` was sent (its commit at pass end)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM published WHERE status = %s AND id::text = ANY(%s)",
                [STATUS_SUCCEEDED, ids],
            )
            if cursor.fetchone()[0] == len(ids):
                return
            assert self.process.poll() is None, self.log_path.read_text(errors="replace")
            time.sleep(0.05)
        raise AssertionError(f"publish did not send {ids}:\n{self.log_path.read_text()}")


# --- the child side: runs under bench.dop_settings --------------------------------------------


def _create(rows: list[dict[str, Any]]) -> list[str]:
    from datetime import timedelta

    from django.utils import timezone
    from django_outbox_pattern.choices import StatusChoice
    from django_outbox_pattern.models import Published

    ids = []
    for spec in rows:
        extra: dict[str, Any] = {}
        if spec.get("state") == "expired":
            extra["expires_at"] = timezone.now() - timedelta(hours=1)
        elif spec.get("state") == "failed":
            extra["status"] = StatusChoice.FAILED
        row = Published.objects.create(
            destination=spec["destination"], body=spec["body"], version=spec.get("version"), **extra
        )
        ids.append(str(row.id))
    return ids


def _pending() -> int:
    from django.utils import timezone
    from django_outbox_pattern.choices import StatusChoice
    from django_outbox_pattern.models import Published

    # The filter of its Producer.publish_message_from_database.
    return Published.objects.filter(
        status=StatusChoice.SCHEDULE, expires_at__gte=timezone.now()
    ).count()


def main() -> None:
    import django

    django.setup()
    action = sys.argv[1]
    if action == "create":
        print(json.dumps(_create(json.load(sys.stdin))))
    elif action == "pending":
        print(_pending())
    else:
        raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    main()
