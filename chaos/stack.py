"""The shop's real processes on a PostgreSQL cluster and a RabbitMQ node of the chaos run's own.

Nothing here imports Django at module level: the runner sets the environment first. The
processes are the ones of the Procfile (gunicorn instead of runserver for the web): two relays and
one worker per consumer service; the fault injectors kill, stop and restart them by pid, and
restart the run's own servers (chaos/servers.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import PYTHON, ROOT
from chaos.servers import PrivateServers

DATABASE = "fitness_chaos"
DATABASE_ALIASES = ("default", "payments", "shipping", "notifications", "analytics")


@dataclass
class Config:
    """Where a chaos run lives and how its processes are started."""

    servers: PrivateServers
    run_dir: Path = ROOT / "var" / "chaos"
    heartbeat: int = 5  # AMQP heartbeat of the workers (seconds)
    workers: str = "standalone"  # or "celery" (the Procfile's command)

    def database_url(self, name: str = DATABASE) -> str:
        """A database of the run's own PostgreSQL cluster (``fitness_chaos`` by default)."""
        return self.servers.postgres.url(name)

    @property
    def broker_url(self) -> str:
        return self.servers.rabbitmq.url

    def rabbitmqctl(self, *args: str, timeout: float = 60) -> str:
        """``rabbitmqctl`` against the run's own RabbitMQ node; its output."""
        return self.servers.rabbitmq.ctl(*args, timeout=timeout)

    @property
    def mail_dir(self) -> Path:
        return self.run_dir / "mail"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"


def chaos_env(config: Config, **extra: str) -> dict[str, str]:
    """The environment of every process: every database alias and the broker pinned to the run's.

    A developer's own ``PAYMENTS_DATABASE_URL``, ``TEST_DATABASE_NAME`` or broker users are never
    inherited, so a chaos run cannot touch the dev or test databases.
    """
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
    for key in ("TEST_DATABASE_NAME", "USE_BROKER_USERS", "OUTBOX_TEST_PAUSE_AFTER_PUBLISH"):
        env.pop(key, None)
    env.pop("OUTBOX_TEST_PAUSE_BEFORE_ACK", None)
    url = config.database_url()
    env.update({f"{alias.upper()}_DATABASE_URL": url for alias in DATABASE_ALIASES[1:]})
    env.update(
        {
            "DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": "fitness.settings.local",
            "DJANGO_DEBUG": "false",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CELERY_BROKER_URL": config.broker_url,
            "OUTBOX_BROKER_URL": config.broker_url,
            "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "DJANGO_EMAIL_FILE_PATH": str(config.mail_dir),
            "SHIPPING_DELIVERY_DELAY_SECONDS": "0",
            "OUTBOX_CONSUMER_HEARTBEAT": str(config.heartbeat),
            "CELERY_BROKER_HEARTBEAT": str(config.heartbeat),
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "text",  # the checker reads the workers' log lines
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def run_quietly(args: list[str], *, env: dict[str, str], timeout: float = 120) -> None:
    """Run a command to completion; raise with its output when it fails."""
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")


def prepare(config: Config) -> None:
    """Start the run's servers, then a migrated database and the broker topology on them.

    Django is not set up yet here: the commands run as child processes.
    """
    import psycopg

    for path in (config.mail_dir, config.log_dir):
        path.mkdir(parents=True, exist_ok=True)
        for old in path.iterdir():
            old.unlink()
    config.servers.start()
    with psycopg.connect(config.database_url("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    env = chaos_env(config)
    # Every alias points at the one database: migrating "default" creates every app's tables.
    run_quietly([PYTHON, "manage.py", "migrate", "--noinput"], env=env)
    run_quietly([PYTHON, "manage.py", "setup_broker"], env=env)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Proc:
    """One named process of the stack; restartable, killable by pid, logging to files."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_dir: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    def start(self) -> Proc:
        self.starts += 1
        log = self.log_dir / f"{self.name}.{self.starts}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group (gunicorn, Celery pool children)
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def log(self) -> str:
        """The current instance's log."""
        return self.logs[-1].read_text(errors="replace") if self.logs else ""

    def all_logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.logs)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process (and its own children, e.g. a Celery pool)."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)

    def stop(self, timeout: float = 15) -> None:
        """SIGCONT (in case it is stopped) and SIGTERM; SIGKILL if it does not exit in time."""
        if not self.alive:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            assert self.popen is not None
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def wait_log(self, needle: str, timeout: float) -> bool:
        """Whether ``needle`` appeared in the current instance's log within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log:
                return True
            if not self.alive:
                return False
            time.sleep(0.05)
        return False


def worker_args(service: str, kind: str, name: str) -> list[str]:
    """The worker of ``service``: ``consume_events`` or the Procfile's Celery command."""
    if kind == "celery":
        celery = str(Path(PYTHON).parent / "celery")
        return [
            celery,
            "-A",
            "fitness",
            "worker",
            "--consume-service",
            service,
            "-Q",
            f"celery-{service}",
            "-c",
            "1",
            "-n",
            f"chaos-{name}@%h",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "INFO",
        ]
    return [PYTHON, "manage.py", "consume_events", "--service", service]


class Stack:
    """The web, two relays and one worker per service, plus extra (hooked) instances on demand."""

    def __init__(self, config: Config, services: list[str]) -> None:
        self.config = config
        self.services = services
        self.env = chaos_env(config)
        self.port = free_port()
        self.web = self._proc(
            "web",
            [
                str(Path(PYTHON).parent / "gunicorn"),
                "fitness.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--timeout",
                "60",
            ],
        )
        self.relays = [
            self._proc(f"relay{n}", [PYTHON, "manage.py", "relay_outbox"]) for n in (1, 2)
        ]
        self.workers = {
            service: self._proc(service, worker_args(service, config.workers, service))
            for service in services
        }
        self.extras: list[Proc] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _proc(self, name: str, args: list[str], **env: str) -> Proc:
        return Proc(name, args, {**self.env, **env}, self.config.log_dir)

    def all(self) -> list[Proc]:
        return [self.web, *self.relays, *self.workers.values(), *self.extras]

    def start(self) -> None:
        for proc in [self.web, *self.relays, *self.workers.values()]:
            proc.start()

    def extra_relay(self, **env: str) -> Proc:
        """One more relay (e.g. with the publish-then-pause test hook)."""
        proc = self._proc(
            f"relay-extra{len(self.extras) + 1}", [PYTHON, "manage.py", "relay_outbox"], **env
        )
        self.extras.append(proc)
        return proc.start()

    def extra_worker(self, service: str, **env: str) -> Proc:
        """One more worker of ``service`` (e.g. with the pause-before-ack test hook)."""
        name = f"{service}-extra{len(self.extras) + 1}"
        proc = self._proc(name, worker_args(service, self.config.workers, name), **env)
        self.extras.append(proc)
        return proc.start()

    def check_alive(self) -> list[str]:
        """Names of the stack's regular processes that exited on their own."""
        return [p.name for p in [self.web, *self.relays, *self.workers.values()] if not p.alive]

    def stop(self) -> None:
        for proc in self.all():
            proc.stop()
