"""The order saga with its real processes: the relay and one worker per service, as children.

Every test here runs on committed data (``transaction=True``) because the workers are other
processes reading the test database through their own connections.
"""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import amqp
import pytest
from django.core.management import call_command

from outbox.consumer.service import all_services
from outbox.tests.helpers import broker_connection
from outbox.tests.processes import ChildProcess

SERVICES = ("payments", "shipping", "notifications", "orders")


def manage_command(tmp_path: Path, *command: str, **env: str) -> ChildProcess:
    """``manage.py <command>`` as a child process on the test database, logging to a file; named
    after the service for ``consume_events --service <name>``, else after the command."""
    name = command[-1] if command[0] == "consume_events" else command[0]
    return ChildProcess.manage(tmp_path, *command, name=name, **env)


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
def start_saga(tmp_path: Path, mail_dir: Path) -> Iterator[Callable[..., list[ChildProcess]]]:
    """Start the relay and the workers of the given services (all four by default)."""
    call_command("setup_broker", verbosity=0)
    connection = broker_connection()
    _purge_service_queues(connection.channel())
    connection.close()
    started: list[ChildProcess] = []
    env = {
        "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "DJANGO_EMAIL_FILE_PATH": str(mail_dir),
    }

    def start(*services: str, relay_databases: tuple[str, ...] = ("default",), **extra_env: str):
        processes = [
            manage_command(tmp_path, "relay_outbox", "--database", alias, **env, **extra_env)
            for alias in relay_databases
        ]
        for name in services or SERVICES:
            processes.append(
                manage_command(tmp_path, "consume_events", "--service", name, **env, **extra_env)
            )
        started.extend(processes)
        return processes

    yield start
    for process in started:
        process.stop()
        # Shown by pytest only when the test failed: what each process said.
        print(f"----- {process.log_path.name}\n{process.log[-4000:]}")
