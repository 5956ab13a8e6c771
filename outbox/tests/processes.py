"""Real child processes for tests: one wrapper for relays, workers, commands and peers.

Every test that starts a process (``manage.py relay_outbox``, ``consume_events``, a Celery
worker, a replay, a peer's publisher...) goes through :class:`ChildProcess`: it runs in the
project directory on the test database and the test broker (:func:`child_env`), writes its
output to a log file the test can read and pytest shows on failure, and is always stopped,
SIGKILLed if it does not exit. Knows nothing about the shop: outbox's own tests and the
project's tests (``tests/``) both import it.
"""

import os
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from signal import SIGTERM
from typing import Any

from outbox.conf import get_settings
from outbox.tests.helpers import BASE_DIR, database_url, wait_for


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child process on the test database and the test broker."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "fitness.settings.test"),
        "DATABASE_URL": database_url(),
        "OUTBOX_BROKER_URL": get_settings().broker_url,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def _manage_argv(*command: str) -> list[str]:
    """``python manage.py <command>`` in the test's interpreter."""
    return [sys.executable, "manage.py", *command]


def _started_in(tmp_path: Path, name: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The keyword arguments of :class:`ChildProcess` for a process a test starts: named
    ``name``, logging to ``<name>-<id>.log`` in ``tmp_path``, the test environment plus ``env``."""
    log_path = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}.log"
    return {"log_path": log_path, "env": child_env(**env), "name": name}


class ChildProcess:
    """``argv`` as a child process of the test, its stdout and stderr in ``log_path``.

    ``env`` is the whole environment (default: :func:`child_env`). :meth:`start` and
    :meth:`manage` build the usual ones: a log file in the test's ``tmp_path``, the test
    environment plus a few variables.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        name: str = "",
    ) -> None:
        self.name = name or Path(argv[0]).name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            list(argv),
            cwd=BASE_DIR,
            env=dict(env) if env is not None else child_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @classmethod
    def start(cls, tmp_path: Path, name: str, argv: Sequence[str], **env: str) -> "ChildProcess":
        """``argv`` with the test environment plus ``env``, logging to ``<name>-<id>.log``."""
        return cls(argv, **_started_in(tmp_path, name, env))

    @classmethod
    def manage(cls, tmp_path: Path, *command: str, name: str = "", **env: str) -> "ChildProcess":
        """``python manage.py <command>``, named after the command unless ``name`` is given."""
        return cls.start(tmp_path, name or command[0], _manage_argv(*command), **env)

    @property
    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        """Wait until ``text`` is in the log; fail, showing the log, if the process exits first."""
        wait_for(lambda: text in self.log or self.process.poll() is not None, timeout, text)
        exited = self.process.returncode
        assert text in self.log, f"{self.name} exited ({exited}) without {text!r}:\n{self.log}"

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process."""
        self.process.send_signal(signum)

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for the process to exit; its exit code (``-signum`` when a signal ended it)."""
        return self.process.wait(timeout)

    def stop(self, signum: int = SIGTERM, timeout: float = 20.0) -> int:
        """Send ``signum`` unless it already exited, SIGKILL it if it has not exited ``timeout``
        seconds later; its exit code. Safe to call again (a test's ``finally``, a fixture)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        return self.process.returncode


class RelayProcess(ChildProcess):
    """``manage.py relay_outbox <args>``, reconnecting and rebalancing its leases quickly."""

    def __init__(self, tmp_path: Path, *args: str, **env: str) -> None:
        fast = {"OUTBOX_RECONNECT_MAX_DELAY": "0.5", "OUTBOX_LEASE_INTERVAL": "0.2"}
        argv = _manage_argv("relay_outbox", *args)
        super().__init__(argv, **_started_in(tmp_path, "relay", {**fast, **env}))
