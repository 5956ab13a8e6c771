"""Benchmark 2: the same drain by django-outbox-pattern's ``publish`` command.

Runs in a project of its own (bench.dop_settings, database ``fitness_bench_dop``), publishing
over STOMP to the same RabbitMQ into a bound queue. Its ``publish`` loop handles every scheduled
row in one transaction (``SELECT ... FOR UPDATE SKIP LOCKED``, one STOMP ``SEND`` and one
``UPDATE`` per row, commit at the end of the pass), so progress is only visible at commit. The
drain is timed from the first message reaching our consumer to the moment all N rows are
committed as sent: start-up and its 1 s idle poll are left out, in its favour.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from pathlib import Path

import amqp

from bench.common import (
    DOP_DB,
    PREFIX,
    PYTHON,
    Route,
    amqp_connect,
    bench_env,
    broker_vhost,
    connect_db,
    database_url,
    ensure_database,
    process,
    run,
)

STOMP_PORT = 61613
STATUS_SUCCEEDED = 2  # django_outbox_pattern.choices.StatusChoice.SUCCEEDED


def stomp_open() -> bool:
    """Whether RabbitMQ's STOMP listener answers."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", STOMP_PORT), 2):
        return True
    return False


def ensure_stomp() -> str:
    """Enable the ``rabbitmq_stomp`` plugin unless it already listens; say which it was."""
    if stomp_open():
        return "already enabled"
    subprocess.run(
        ["rabbitmq-plugins", "enable", "rabbitmq_stomp"], check=True, capture_output=True
    )
    deadline = time.monotonic() + 30
    while not stomp_open():
        if time.monotonic() > deadline:
            raise RuntimeError("rabbitmq_stomp enabled but port 61613 does not answer")
        time.sleep(0.2)
    return "enabled by the benchmark"


def dop_env() -> dict[str, str]:
    """Environment of the peer's processes: its own settings and database."""
    return bench_env(
        DJANGO_SETTINGS_MODULE="bench.dop_settings",
        DOP_DATABASE_URL=database_url(DOP_DB),
        DOP_STOMP_VHOST=broker_vhost(),
    )


def dop_drain(*, n: int, queue_type: str, log_dir: Path) -> dict:
    """Time django-outbox-pattern's ``publish`` draining ``n`` rows."""
    stomp = ensure_stomp()
    ensure_database(DOP_DB)
    env = dop_env()
    run([PYTHON, "-m", "django", "migrate", "--noinput"], env=env)
    route = Route(f"{PREFIX}dop", f"{PREFIX}dop.q", queue_type)
    route.declare()
    destination = f"/exchange/{route.exchange}/bench.order.placed"
    run([PYTHON, "-m", "bench.dop_load", str(n), destination], env=env)

    arrivals: list[float] = []
    delivery_modes: set[int] = set()
    stop = threading.Event()
    ready = threading.Event()

    def consume() -> None:
        with contextlib.closing(amqp_connect("bench-dop-consumer")) as conn:
            channel = conn.channel()
            channel.basic_qos(0, 1000, False)

            def on_message(message: amqp.Message) -> None:
                arrivals.append(time.perf_counter())
                delivery_modes.add(int(message.properties.get("delivery_mode") or 1))

            channel.basic_consume(route.queue, callback=on_message, no_ack=True)
            ready.set()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0.2)

    consumer = threading.Thread(target=consume, name="dop-consumer", daemon=True)
    consumer.start()
    ready.wait(10)
    done_at = None
    log = log_dir / "dop_publish.log"
    try:
        with (
            connect_db(DOP_DB) as db,
            process([PYTHON, "-m", "django", "publish"], env=env, log=log) as publisher,
        ):
            started = time.perf_counter()
            deadline = started + max(120.0, n / 50)
            while time.perf_counter() < deadline:
                sent = db.execute(
                    "SELECT count(*) FROM published WHERE status = %s", [STATUS_SUCCEEDED]
                ).fetchone()[0]
                if sent >= n:
                    done_at = time.perf_counter()
                    break
                if publisher.poll() is not None:
                    raise RuntimeError(f"django-outbox-pattern publish exited; see {log}")
                time.sleep(0.02)
        deadline = time.monotonic() + 10
        while len(arrivals) < n and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        consumer.join(5)
        route.delete()
    if done_at is None or not arrivals:
        raise RuntimeError(f"django-outbox-pattern did not drain {n} rows in time; see {log}")
    drain_seconds = done_at - arrivals[0]
    send_seconds = arrivals[-1] - arrivals[0]
    return {
        "package": f"django-outbox-pattern {_version()}",
        "messages": n,
        "delivered": len(arrivals),
        "seconds": round(drain_seconds, 3),
        "msg_per_s": round(n / drain_seconds, 1),
        "send_only_msg_per_s": round(len(arrivals) / send_seconds, 1) if send_seconds else None,
        "wall_seconds_from_process_start": round(done_at - started, 3),
        "publisher_confirms": False,
        "confirms_note": "STOMP SEND without a receipt header (producers.Producer.send): no ack",
        "persistent": sorted(delivery_modes) == [2],
        "delivery_modes_seen": sorted(delivery_modes),
        "stomp_plugin": stomp,
    }


def _version() -> str:
    from importlib.metadata import version

    return version("django-outbox-pattern")
