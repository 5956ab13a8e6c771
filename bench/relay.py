"""Benchmarks of the outbox relay (issue 3): drain throughput, latency, retained history.

1. ``drain``: 50,000 pending rows drained by the relay's drain loop *in-process*
   (``outbox.relay.Relay(once=True).run()``, what ``relay_outbox --once`` runs, without the
   interpreter and Django start-up), against the raw publish of the same messages (bench.raw),
   interleaved round by round so both see the same machine.
3. ``latency``: see bench.latency.
4. ``retained``: the drain of (1) again with 1,000,000 published rows kept in the table.

Django must be set up (on the benchmark database) before these functions are called.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    PREFIX,
    PYTHON,
    Route,
    bench_env,
    connect_db,
    median,
)
from bench.cpu import CpuMeter
from bench.raw import raw_publish, raw_publish_frames
from bench.rows import copy_pending, insert_published, make_messages, reset_outbox

RAW_WINDOWS = (500, 5000)


def _pending(conn: object) -> int:
    return conn.execute("SELECT count(*) FROM outbox_pending").fetchone()[0]


def relay_drain(expected: int) -> dict:
    """Drain the outbox in-process with the relay's own loop; returns its rate.

    The relay's phases are timed by wrapping the functions it calls, which changes nothing in
    what it does: where the time goes. ``send`` encodes and writes messages, ``confirms`` reads
    (and, with nothing else to do, waits for) confirms, ``claim`` is its claim query; ``mark``
    is the recorder thread's UPDATE, which runs while the relay goes on. They overlap in time,
    so they are time spent per phase, not shares of the wall clock.
    """
    from django.db import connection

    from outbox import recorder as recorder_module
    from outbox import relay as relay_module

    phases = {"claim": 0.0, "send": 0.0, "confirms": 0.0, "mark": 0.0}

    def timed(name: str, func: Callable) -> Callable:
        def wrapper(*args: object, **kwargs: object) -> object:
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                phases[name] += time.perf_counter() - t0

        return wrapper

    relay = relay_module.Relay(once=True)
    relay.publisher.send = timed("send", relay.publisher.send)
    relay.publisher.collect = timed("confirms", relay.publisher.collect)
    originals = relay_module.claim_batch, recorder_module.mark_published
    relay_module.claim_batch = timed("claim", originals[0])
    recorder_module.mark_published = timed("mark", originals[1])
    try:
        with CpuMeter() as cpu:
            started = time.perf_counter()
            published = relay.run()
            elapsed = time.perf_counter() - started
    finally:
        relay_module.claim_batch, recorder_module.mark_published = originals
    connection.close()
    if published != expected:
        raise RuntimeError(f"relay published {published} of {expected} rows")
    return {
        "messages": published,
        "seconds": round(elapsed, 3),
        "msg_per_s": published / elapsed,
        "phase_seconds": {k: round(v, 3) for k, v in phases.items()},
        "cpu_seconds": cpu.seconds,
    }


def drain(*, n: int, rounds: int, queue_type: str, log_dir: Path) -> dict:
    """Benchmark 1: relay drain vs raw publish, ``rounds`` interleaved rounds, medians."""
    route = Route(f"{PREFIX}drain", f"{PREFIX}drain.q", queue_type)
    route.declare()
    messages = make_messages(n, exchange=route.exchange)
    wire = _wire_messages(messages)
    raw_runs: list[dict] = []
    relay_runs: list[dict] = []
    try:
        with connect_db() as conn:
            for _ in range(rounds):
                for publish in (raw_publish, raw_publish_frames):
                    for window in RAW_WINDOWS:
                        route.purge()
                        with CpuMeter() as cpu:
                            raw_runs.append(publish(wire, window=window))
                        raw_runs[-1]["cpu_seconds"] = cpu.seconds
                        _check_delivered(route, n)
                route.purge()
                reset_outbox(conn)
                copy_pending(conn, messages)
                relay_runs.append(relay_drain(n))
                _check_delivered(route, n)
                if _pending(conn):
                    raise RuntimeError("rows still pending after the drain")
            # Once, for the record: the same drain as the command people run (with start-up).
            route.purge()
            reset_outbox(conn)
            copy_pending(conn, messages)
            command = _relay_once_subprocess(n, log_dir)
            _check_delivered(route, n)
    finally:
        route.delete()
    by_variant = {
        f"{writer}/{window}": _median_rate(raw_runs, writer, window)
        for writer in ("basic_publish", "frames")
        for window in RAW_WINDOWS
    }
    best_variant = max(by_variant, key=by_variant.get)
    raw_rate = by_variant[best_variant]
    basic_rate = max(by_variant[f"basic_publish/{w}"] for w in RAW_WINDOWS)
    relay_rate = median([r["msg_per_s"] for r in relay_runs])
    by_round = _ratios_by_round(raw_runs, relay_runs, best_variant)
    return {
        "messages": n,
        "rounds": rounds,
        "queue_type": queue_type,
        "message_body_bytes": len(wire[0][0].body),
        "raw_msg_per_s": round(raw_rate, 1),
        "raw_best": best_variant,
        "raw_by_variant": {k: round(v, 1) for k, v in by_variant.items()},
        # The baseline as measured before the relay had its own frame encoder (continuity).
        "raw_basic_publish_msg_per_s": round(basic_rate, 1),
        "ratio_to_basic_publish": round(relay_rate / basic_rate, 3),
        "relay_msg_per_s": round(relay_rate, 1),
        "relay_runs_msg_per_s": [round(r["msg_per_s"], 1) for r in relay_runs],
        "relay_phase_seconds": [r["phase_seconds"] for r in relay_runs],
        "raw_runs": raw_runs,
        "ratio": round(relay_rate / raw_rate, 3),
        # Each round's relay run against the same round's run of the fastest raw variant: the
        # machine's speed drifts between rounds, and a pair is measured within a few seconds.
        "ratio_by_round": by_round,
        "ratio_paired_median": round(median(by_round), 3),
        "target_ratio": 0.8,
        # Where the 2 cores went, per message: the relay's median round and the fastest raw
        # variant's median run (see bench.cpu).
        "cpu_us_per_msg": {
            "relay": _cpu_per_message(relay_runs, n),
            "raw": _cpu_per_message(
                [r for r in raw_runs if f"{r['writer']}/{r['window']}" == best_variant], n
            ),
        },
        "relay_once_subprocess": command,
    }


def _wire_messages(messages: list) -> list[tuple]:
    """The exact AMQP messages the relay sends for ``messages``: loaded, claimed, built.

    The relay sends the payload's text as stored in PostgreSQL, so the baseline's bodies come
    from the same claim rather than from a Python ``json.dumps`` (a few bytes apart otherwise).
    """
    from outbox.claiming import claim_batch
    from outbox.wire import to_amqp

    with connect_db() as conn:
        reset_outbox(conn)
        copy_pending(conn, messages)
        rows = claim_batch(partitions=range(1024), limit=len(messages))
        reset_outbox(conn)
    return [(to_amqp(row), row.exchange, row.routing_key) for row in rows]


def _cpu_per_message(runs: list[dict], n: int) -> dict[str, float]:
    """Median CPU microseconds per message of each process group over ``runs``."""
    groups = sorted({group for run in runs for group in run.get("cpu_seconds", {})})
    return {
        group: round(median([run["cpu_seconds"].get(group, 0.0) for run in runs]) / n * 1e6, 1)
        for group in groups
    }


def _ratios_by_round(raw_runs: list[dict], relay_runs: list[dict], variant: str) -> list[float]:
    """Relay rate / the raw ``variant``'s rate, round by round (runs are in round order)."""
    raw = [r["msg_per_s"] for r in raw_runs if f"{r['writer']}/{r['window']}" == variant]
    return [
        round(relay["msg_per_s"] / base, 3) for relay, base in zip(relay_runs, raw, strict=True)
    ]


def _median_rate(runs: list[dict], writer: str, window: int) -> float:
    return median([r["msg_per_s"] for r in runs if (r["writer"], r["window"]) == (writer, window)])


def _check_delivered(route: Route, n: int) -> None:
    depth = route.wait_depth(n)
    if depth != n:
        raise RuntimeError(f"{route.queue}: {depth} messages routed, expected {n}")


def _relay_once_subprocess(n: int, log_dir: Path) -> dict:
    """``manage.py relay_outbox --once`` as a subprocess: wall time including start-up."""
    import subprocess

    log = log_dir / "relay_once.log"
    started = time.perf_counter()
    with log.open("wb") as out:
        subprocess.run(
            [PYTHON, "manage.py", "relay_outbox", "--once"],
            env=bench_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )
    elapsed = time.perf_counter() - started
    return {"messages": n, "seconds": round(elapsed, 3), "msg_per_s": round(n / elapsed, 1)}


def retained(
    *, n: int, history: int, rounds: int, queue_type: str, baseline_msg_per_s: float | None
) -> dict:
    """Benchmark 4: drain ``n`` pending rows with ``history`` published rows in the table."""
    route = Route(f"{PREFIX}retained", f"{PREFIX}retained.q", queue_type)
    route.declare()
    runs: list[dict] = []
    try:
        with connect_db() as conn:
            reset_outbox(conn)
            started = time.perf_counter()
            insert_published(conn, history, exchange=route.exchange)
            load_seconds = time.perf_counter() - started
            for round_no in range(rounds):
                route.purge()
                # Fresh event ids and aggregates each round: the previous round's rows stay.
                messages = make_messages(n, exchange=route.exchange, start=round_no * n)
                copy_pending(conn, messages)
                runs.append(relay_drain(n))
                _check_delivered(route, n)
            total_rows = conn.execute("SELECT count(*) FROM outbox_message").fetchone()[0]
            table_size = conn.execute(
                "SELECT pg_size_pretty(pg_total_relation_size('outbox_message'))"
            ).fetchone()[0]
            reset_outbox(conn)
    finally:
        route.delete()
    rate = median([r["msg_per_s"] for r in runs])
    result = {
        "messages": n,
        "retained_published_rows": history,
        "rows_in_table_at_end": total_rows,
        "table_size_at_end": table_size,
        "history_load_seconds": round(load_seconds, 1),
        "rounds": rounds,
        "relay_msg_per_s": round(rate, 1),
        "relay_runs_msg_per_s": [round(r["msg_per_s"], 1) for r in runs],
        "relay_phase_seconds": [r["phase_seconds"] for r in runs],
        "target_ratio": 0.9,
    }
    if baseline_msg_per_s:
        result["ratio_to_drain"] = round(rate / baseline_msg_per_s, 3)
    return result
