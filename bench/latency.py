"""Benchmark 3: commit-to-consumer latency at a steady rate, relay woken by LISTEN/NOTIFY.

* ``relay_outbox`` runs as a subprocess, as in production (the Procfile's command).
* Producers commit one event per transaction with ``record_event`` on a schedule (event *i* is
  due at start + i / rate). Four processes share it by default (``--latency-producers``): one alone
  reached ~200 commits/s here, every commit waiting for a WAL flush.
  Producers are processes, not threads, so no GIL hand-over delays the time stamps.
* A consumer process reads a queue bound to the benchmark exchange and stamps each delivery.

Latency = consumer's ``time.time()`` at delivery - producer's ``time.time()`` right after the
transaction committed (same machine, same clock). The first ``warmup`` seconds are dropped.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import amqp

from bench.common import (
    PREFIX,
    PYTHON,
    Route,
    amqp_connect,
    bench_env,
    connect_db,
    percentile,
    process,
    wait_for_log,
)
from bench.rows import order_payload, reset_outbox

WINDOW_SECONDS = 5


def _consume(queue: str, pipe: Any, stop: Any, ready: Any, count: Any) -> None:
    received: dict[str, float] = {}
    with contextlib.closing(amqp_connect("bench-latency-consumer")) as conn:
        channel = conn.channel()
        channel.basic_qos(0, 1000, False)

        def on_message(message: amqp.Message) -> None:
            received[message.properties["message_id"]] = time.time()
            count.value += 1

        channel.basic_consume(queue, callback=on_message, no_ack=True)
        ready.set()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.1)
    pipe.send(received)


def _produce(
    k: int, producers: int, total: int, rate: float, start_at: float, event_type: Any, out: Any
) -> None:
    from django.db import connection, transaction

    from outbox.recording import record_event

    payload = order_payload(1)
    commits: dict[str, tuple[int, float]] = {}
    lag = 0.0
    for i in range(k, total, producers):
        delay = start_at + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            lag = max(lag, -delay)
        with transaction.atomic():
            row = record_event(event_type, aggregate_id=str(i), payload=payload)
        commits[str(row.event_id)] = (i, time.time())
    connection.close()
    out.put((commits, lag))


def latency(
    *,
    rate: float,
    seconds: float,
    warmup: float,
    producers: int,
    queue_type: str,
    log_dir: Path,
) -> dict:
    """Run the steady-rate latency benchmark and return its statistics."""
    from django.db import connections

    from outbox.registry import EventType, register, unregister

    route = Route(f"{PREFIX}latency", f"{PREFIX}latency.q", queue_type)
    route.declare()
    event_type = register(
        EventType(
            type="bench.latency.tick",
            version=1,
            exchange=route.exchange,
            aggregate_type="bench_tick",
            schema={"type": "object", "required": ["order_id"]},
            description="Benchmark event (bench/latency.py), never produced by the shop.",
        )
    )
    with connect_db() as conn:
        reset_outbox(conn)
    connections.close_all()  # the children are forked: they must open their own
    ctx = mp.get_context("fork")
    stop, ready, count = ctx.Event(), ctx.Event(), ctx.Value("l", 0)
    receiver, sender = ctx.Pipe(duplex=False)
    consumer = ctx.Process(target=_consume, args=(route.queue, sender, stop, ready, count))
    consumer.start()
    total = int(rate * (seconds + warmup))
    commits: dict[str, tuple[int, float]] = {}
    lags: list[float] = []
    relay_log = log_dir / "relay_latency.log"
    try:
        if not ready.wait(15):
            raise RuntimeError("latency consumer did not start")
        with process(
            [PYTHON, "manage.py", "relay_outbox"], env=bench_env(LOG_LEVEL="INFO"), log=relay_log
        ) as relay:
            wait_for_log(relay_log, "relay starting", relay, timeout=30)
            time.sleep(1.0)  # its first (empty) claim is done and it LISTENs
            results = ctx.Queue()
            start_at = time.monotonic() + 0.5
            workers = [
                ctx.Process(
                    target=_produce,
                    args=(k, producers, total, rate, start_at, event_type, results),
                )
                for k in range(producers)
            ]
            for w in workers:
                w.start()
            for _ in workers:
                part, lag = results.get(timeout=seconds + warmup + 120)
                commits.update(part)
                lags.append(lag)
            for w in workers:
                w.join()
            deadline = time.monotonic() + 15
            while count.value < total and time.monotonic() < deadline:
                time.sleep(0.05)
            if relay.poll() is not None:
                raise RuntimeError(f"relay exited during the benchmark; see {relay_log}")
    finally:
        stop.set()
        received: dict[str, float] = receiver.recv() if receiver.poll(10) else {}
        consumer.join(5)
        unregister(event_type)
        route.delete()
        with connect_db() as conn:
            reset_outbox(conn)
    return _statistics(
        commits,
        received,
        rate=rate,
        seconds=seconds,
        warmup=warmup,
        producers=producers,
        lag=max(lags or [0.0]),
    )


def _statistics(
    commits: dict[str, tuple[int, float]],
    received: dict[str, float],
    *,
    rate: float,
    seconds: float,
    warmup: float,
    producers: int,
    lag: float,
) -> dict:
    skip = int(rate * warmup)
    measured = [(i, t, received.get(eid)) for eid, (i, t) in commits.items() if i >= skip]
    latencies = [(got - t) * 1000 for _, t, got in measured if got is not None]
    missing = sum(1 for *_, got in measured if got is None)
    stamps = sorted(t for _, t in commits.values())
    achieved = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
    windows = []
    for start in range(0, int(seconds), WINDOW_SECONDS):
        lo, hi = skip + start * rate, skip + (start + WINDOW_SECONDS) * rate
        values = [(got - t) * 1000 for i, t, got in measured if got and lo <= i < hi]
        if values:
            windows.append(
                {
                    "from_s": start,
                    "p50_ms": round(percentile(values, 50), 2),
                    "p99_ms": round(percentile(values, 99), 2),
                }
            )
    return {
        "target_rate": rate,
        "achieved_rate": round(achieved, 1),
        "producers": producers,
        "producer_max_lag_ms": round(lag * 1000, 1),
        "seconds_measured": seconds,
        "warmup_seconds": warmup,
        "events_measured": len(latencies),
        "events_missing": missing,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2) if latencies else None,
        "by_window": windows,
        "target_p99_ms": 20,
        "commit_time": "producer's time.time() right after transaction.atomic() returned",
    }
