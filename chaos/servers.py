"""A PostgreSQL cluster and a RabbitMQ node of the chaos run's own, on free loopback ports.

The run restarts its servers (``pg_ctl restart -m immediate``, ``rabbitmqctl stop_app``): on the
machine's own servers that would hit every database and every vhost — a developer's ``make run``,
other people's test runs, CI. Private servers keep the faults inside the run. They are built from
the same installed binaries as the machine's (Debian's ``postgresql-<version>`` and
``rabbitmq-server``), start in a few seconds and are removed at the end.

As root, each server runs as its package's system user (``postgres``, ``rabbitmq``) — PostgreSQL
refuses to run as root, and ``rabbitmqctl`` must share the node's Erlang cookie; as anybody else,
as that user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


def _as_user(user: str, args: list[str], env: dict[str, str] | None = None) -> list[str]:
    """``args`` run as ``user`` when we are root (with ``env`` set), else as they are."""
    assignments = [f"{key}={value}" for key, value in (env or {}).items()]
    if os.geteuid() == 0:
        return ["runuser", "-u", user, "--", "env", *assignments, *args]
    return ["env", *assignments, *args] if assignments else args


def _run(args: list[str], *, timeout: float = 120) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout


def _owned_dir(path: Path, user: str) -> Path:
    """``path`` created and handed to ``user`` (when we are root)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(path, user, user)
    return path


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL's ``bin`` (Debian: /usr/lib/postgresql/<version>/bin)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return found[-1].parent


@dataclass
class PrivatePostgres:
    """A throw-away PostgreSQL cluster (trust auth, user ``postgres``) on ``port``."""

    root: Path
    port: int
    user: str = "postgres"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *args: str) -> list[str]:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        # -l: the server's output goes to a file, never to our pipe (which would then stay open).
        log = str(self.root / "server.log")
        pg_ctl = str(postgres_bindir() / "pg_ctl")
        return _as_user(self.user, [pg_ctl, "-D", str(self.data), "-l", log, "-o", options, *args])

    def start(self) -> None:
        """initdb (once) and start; returns when the server accepts connections."""
        _owned_dir(self.root, self.user)
        if not self.data.exists():
            initdb = str(postgres_bindir() / "initdb")
            args = [initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
            _run(_as_user(self.user, [*args, "--no-sync"]))
        _run(self._pg_ctl("-w", "start"))
        self.wait()

    def restart_immediate(self) -> None:
        """Crash the server (every connection dies mid-transaction) and start it again."""
        _run(self._pg_ctl("-m", "immediate", "-w", "restart"))
        self.wait()

    def wait(self, timeout: float = 60) -> None:
        """Until the server answers a query (after start-up or crash recovery)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            _run(self._pg_ctl("-m", "fast", "-w", "stop"), timeout=60)


@dataclass
class PrivateRabbitMQ:
    """A throw-away single RabbitMQ node (no plugins, user guest) on ``port``."""

    root: Path
    port: int
    dist_port: int
    node: str
    user: str = "rabbitmq"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        home = Path("/var/lib/rabbitmq") if os.geteuid() == 0 else Path.home()
        return {
            "HOME": str(home),  # the Erlang cookie rabbitmqctl uses too
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.root / "pid"),
        }

    def start(self, timeout: float = 90) -> None:
        """Start the node detached; returns when it accepts AMQP connections."""
        _owned_dir(self.root, self.user)
        (self.root / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.root / "enabled_plugins").write_text("[].\n")
        for name in ("rabbitmq.conf", "enabled_plugins"):
            if os.geteuid() == 0:
                shutil.chown(self.root / name, self.user, self.user)
        # Quorum queues hold file handles: the soft limit (often 1024) goes up to the hard one.
        server = f'ulimit -n "$(ulimit -Hn)" || true; exec {RABBITMQ_BIN / "rabbitmq-server"}'
        _run(_as_user(self.user, ["sh", "-c", f"{server} -detached"], self._env()))
        deadline = time.monotonic() + timeout
        while True:  # the node registers with epmd a moment after -detached returns
            try:
                self.ctl("await_startup", timeout=60)
                return
            except (RuntimeError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """``rabbitmqctl -n <node> -q ...``; its output."""
        command = [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, "-q", *args]
        return _run(_as_user(self.user, command, self._env()), timeout=timeout)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.ctl("stop", timeout=60)


@dataclass
class PrivateServers:
    """Both servers, in one temporary directory that is removed by :meth:`stop`."""

    postgres: PrivatePostgres
    rabbitmq: PrivateRabbitMQ
    root: Path

    @classmethod
    def create(cls, free_port: Callable[[], int]) -> PrivateServers:
        """Both servers on free ports, in a new temporary directory (not started yet)."""
        root = Path(tempfile.mkdtemp(prefix="fitness-chaos-"))
        root.chmod(0o755)  # the servers' own users must reach their directories
        node = f"fitness-chaos-{os.getpid()}@localhost"
        return cls(
            postgres=PrivatePostgres(root / "postgres", free_port()),
            rabbitmq=PrivateRabbitMQ(root / "rabbitmq", free_port(), free_port(), node),
            root=root,
        )

    def start(self) -> None:
        """Start PostgreSQL, then RabbitMQ (about ten seconds in all)."""
        self.postgres.start()
        self.rabbitmq.start()

    def stop(self, *, keep: bool = False) -> None:
        """Stop both; remove their data and logs unless ``keep``."""
        self.rabbitmq.stop()
        self.postgres.stop()
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)
