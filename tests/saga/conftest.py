"""The order saga with its real processes: the relay and one worker per service, as children.

Every test here runs on committed data (``transaction=True``) because the workers are other
processes reading the test database through their own connections.
"""

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import amqp
import pytest
from django.core.management import call_command

from outbox.consumer.service import all_services
from outbox.tests.helpers import BASE_DIR, broker_connection, database_url

SERVICES = ("payments", "shipping", "notifications", "orders")


class ManagedCommand:
    """``manage.py <command>`` as a child process on the test database, logging to a file."""

    def __init__(self, tmp_path: Path, *command: str, **env: str) -> None:
        # The service name for "consume_events --service <name>", else the command.
        self.name = command[-1] if command[0] == "consume_events" else command[0]
        self.log_path = tmp_path / f"{self.name}-{uuid.uuid4().hex[:6]}.log"
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "fitness.settings.test",
            "DATABASE_URL": database_url(),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", *command],
            cwd=BASE_DIR,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def _purge_service_queues(channel: amqp.Channel) -> None:
    """Leftovers of an earlier run (or of `make run`) must not leak into this test."""
    for service in all_services():  # every declared service, also those not started by default
        for queue in [service.queue_name, service.dead_letter_queue, *service.retry_queues]:
            with contextlib.suppress(amqp.exceptions.NotFound):
                channel.queue_purge(queue)


@pytest.fixture
def mail_dir(tmp_path: Path) -> Path:
    """Where the notifications worker writes its e-mails (file backend)."""
    path = tmp_path / "mail"
    path.mkdir()
    return path


@pytest.fixture
def start_saga(tmp_path: Path, mail_dir: Path) -> Iterator[Callable[..., list[ManagedCommand]]]:
    """Start the relay and the workers of the given services (all four by default)."""
    call_command("setup_broker", verbosity=0)
    connection = broker_connection()
    _purge_service_queues(connection.channel())
    connection.close()
    started: list[ManagedCommand] = []
    env = {
        "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "DJANGO_EMAIL_FILE_PATH": str(mail_dir),
    }

    def start(*services: str, relay_databases: tuple[str, ...] = ("default",), **extra_env: str):
        processes = [
            ManagedCommand(tmp_path, "relay_outbox", "--database", alias, **env, **extra_env)
            for alias in relay_databases
        ]
        for name in services or SERVICES:
            processes.append(
                ManagedCommand(tmp_path, "consume_events", "--service", name, **env, **extra_env)
            )
        started.extend(processes)
        return processes

    yield start
    for process in started:
        process.stop()
        # Shown by pytest only when the test failed: what each process said.
        print(f"----- {process.log_path.name}\n{process.log[-4000:]}")
