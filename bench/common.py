"""Shared plumbing of the benchmarks: databases, environment, broker helpers, statistics.

Nothing here imports Django at module level, so the runner can set the environment (which
database, which settings) before Django is configured.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import amqp
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
# A virtual host of its own: a developer's `make run` (same queue names) is never disturbed.
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/fitness_bench")
BENCH_DB = "fitness_bench"
DOP_DB = "fitness_bench_dop"
# Exchanges and queues the benchmarks declare, and delete when done (all start "bench.").
PREFIX = "bench."


def database_url(name: str) -> str:
    """The URL of database ``name`` on the benchmark's PostgreSQL server."""
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def bench_env(database: str = BENCH_DB, **extra: str) -> dict[str, str]:
    """The environment of the shop's processes in a benchmark: every alias on ``database``.

    Every per-service database URL is pinned to the benchmark database too, so a developer's own
    ``PAYMENTS_DATABASE_URL`` (or the test suite's ``TEST_DATABASE_NAME``) can never be touched.
    """
    env = dict(os.environ)
    env.pop("TEST_DATABASE_NAME", None)
    url = database_url(database)
    # Any service database a developer pointed elsewhere (``<SERVICE>_DATABASE_URL``) too.
    for key in [k for k in env if k.endswith("_DATABASE_URL")]:
        env[key] = url
    env.update(
        {
            "DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": "fitness.settings.local",
            "DJANGO_DEBUG": "false",  # DEBUG keeps every query in memory
            "CELERY_BROKER_URL": BROKER_URL,
            "OUTBOX_BROKER_URL": BROKER_URL,
            "LOG_LEVEL": "WARNING",
            "SHIPPING_DELIVERY_DELAY_SECONDS": "0",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def ensure_database(name: str, *, fresh: bool = False) -> None:
    """Create database ``name`` if it is missing (dropping it first with ``fresh``)."""
    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        ident = sql.Identifier(name)
        if fresh:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))


def connect_db(name: str = BENCH_DB) -> psycopg.Connection:
    """A plain autocommit psycopg connection to ``name`` (for bulk loading and counting)."""
    return psycopg.connect(database_url(name), autocommit=True)


def run(args: list[str], *, env: dict[str, str], quiet: bool = True) -> None:
    """Run a command to completion; show its output only when it fails."""
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not quiet:
        sys.stderr.write(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {result.returncode}")


def broker_vhost() -> str:
    """The benchmark broker's virtual host."""
    from kombu.utils.url import parse_url

    return parse_url(BROKER_URL).get("virtual_host") or "/"


def amqp_connect(name: str = "bench") -> amqp.Connection:
    """A py-amqp connection to the benchmark broker, with the relay's connection options.

    Same class as the relay (``outbox.broker.PublishingConnection``: no per-publish socket read
    for ``connection.blocked``), so the raw baseline is the fastest publish, not a handicapped one.
    """
    from kombu.utils.url import parse_url

    from outbox.broker import PublishingConnection

    parts = parse_url(BROKER_URL)
    conn = PublishingConnection(
        host=f"{parts.get('hostname') or '127.0.0.1'}:{parts.get('port') or 5672}",
        userid=parts.get("userid") or "guest",
        password=parts.get("password") or "guest",
        virtual_host=parts.get("virtual_host") or "/",
        heartbeat=0,
        client_properties={"connection_name": name},
        # A broker that accepts the socket but never answers must not hang the run.
        connect_timeout=10,
        read_timeout=60,
        write_timeout=60,
    )
    conn.connect()
    return conn


def ensure_vhost() -> None:
    """Create the benchmark's virtual host with rabbitmqctl (a local broker) if it is missing.

    A broker that does not answer yet (restarting) gets a minute before the run gives up.
    """
    deadline = time.monotonic() + 60
    while True:
        try:
            amqp_connect().close()
            return
        except (amqp.exceptions.AccessRefused, amqp.exceptions.NotAllowed):
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
    vhost = broker_vhost()
    for command in (
        ["rabbitmqctl", "-q", "add_vhost", vhost],
        ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
    ):
        subprocess.run(command, check=True, capture_output=True)


@dataclass
class Route:
    """A durable topic exchange with one queue bound to every routing key (``#``)."""

    exchange: str
    queue: str
    queue_type: str = "quorum"

    def declare(self) -> None:
        """(Re)declare both, empty."""
        with contextlib.closing(amqp_connect()) as conn:
            ch = conn.channel()
            # Start clean: a previous interrupted run may have left the queue with messages.
            ch.queue_delete(self.queue)
            ch.exchange_declare(self.exchange, "topic", durable=True, auto_delete=False)
            args = {"x-queue-type": self.queue_type}
            ch.queue_declare(self.queue, durable=True, auto_delete=False, arguments=args)
            ch.queue_bind(self.queue, self.exchange, "#")

    def depth(self) -> int:
        """Messages ready in the queue."""
        with contextlib.closing(amqp_connect()) as conn:
            ch = conn.channel()
            return ch.queue_declare(self.queue, passive=True).message_count

    def wait_depth(self, expected: int, timeout: float = 30.0) -> int:
        """Wait until the queue holds ``expected`` messages (quorum counts lag a little)."""
        deadline = time.monotonic() + timeout
        depth = self.depth()
        while depth < expected and time.monotonic() < deadline:
            time.sleep(0.1)
            depth = self.depth()
        return depth

    def purge(self) -> None:
        """Empty the queue."""
        with contextlib.closing(amqp_connect()) as conn:
            conn.channel().queue_purge(self.queue)

    def delete(self) -> None:
        """Delete the queue and the exchange (best effort)."""
        with contextlib.suppress(Exception), contextlib.closing(amqp_connect()) as conn:
            ch = conn.channel()
            ch.queue_delete(self.queue)
            ch.exchange_delete(self.exchange)


@contextlib.contextmanager
def process(
    args: list[str], *, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in the background (output to ``log``); SIGTERM it, then SIGKILL, on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def wait_for_log(log: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until ``needle`` appears in a background process's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{log.name}: process exited ({proc.returncode}); see {log}")
        time.sleep(0.05)
    raise RuntimeError(f"{log.name}: {needle!r} not seen within {timeout}s; see {log}")


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by linear interpolation, like numpy's default."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def median(values: list[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, Any]:
    """What this ran on: cores, memory, Python, PostgreSQL and RabbitMQ versions."""
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        kib = int(f.readline().split()[1])
        info["memory_gib"] = round(kib / 1024 / 1024, 1)
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(Exception), connect_db("postgres") as conn:
        info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    with contextlib.suppress(Exception), contextlib.closing(amqp_connect()) as conn:
        props = conn.server_properties
        info["rabbitmq"] = _text(props.get("version"))
        info["erlang"] = _text(props.get("platform"))
    return info


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
