"""``make bench``: every benchmark in one run, a table on stdout, JSON in bench/results/.

    python -m bench.run            # the full run (~5-10 minutes on 2 cores)
    python -m bench.run --quick    # smaller N, about a minute and a half
    python -m bench.run --only drain,latency

Everything runs against the local PostgreSQL and RabbitMQ, on databases of its own
(``fitness_bench``, ``fitness_bench_dop``; created and migrated here) and on exchanges and queues
named ``bench.*`` that are deleted afterwards: the dev and test databases are never touched.
See docs/benchmarks.md for what each number means.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from bench.common import (
    BENCH_DB,
    PYTHON,
    ROOT,
    bench_env,
    connect_db,
    ensure_database,
    ensure_vhost,
    machine,
    run,
)
from bench.latency import WINDOW_SECONDS

RESULTS = ROOT / "bench" / "results"
SCENARIOS = ("drain", "dop", "latency", "retained", "saga")
# A 1-minute load average above this at the start means other jobs share the 2 cores.
BUSY_LOAD = 1.0
RUN_LOCK_KEY = 0x62656E6368  # "bench"


@dataclass(frozen=True)
class Sizes:
    drain: int
    drain_rounds: int
    dop: int
    latency_rate: float
    latency_seconds: float
    latency_warmup: float
    history: int
    retained: int
    retained_rounds: int
    saga_orders: int
    saga_paced_orders: int
    saga_paced_rate: float


FULL = Sizes(50_000, 3, 5_000, 500, 20, 2, 1_000_000, 50_000, 3, 300, 50, 5)
QUICK = Sizes(10_000, 1, 1_000, 500, 5, 1, 100_000, 10_000, 1, 40, 10, 5)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and report; exit status 1 if a benchmark could not run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller N (a smoke run)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument(
        "--queue-type",
        default="quorum",
        choices=["quorum", "classic"],
        help="type of the bound queue the messages are routed to (the shop's are quorum)",
    )
    parser.add_argument(
        "--latency-producers",
        type=int,
        # One process commits ~200 events/s here (each commit waits for a WAL flush): four
        # share the 500/s schedule, so the offered rate is the one asked for.
        default=4,
        help="processes sharing the latency benchmark's commit schedule (default 4)",
    )
    parser.add_argument(
        "--saga-workers",
        default="standalone",
        choices=["standalone", "celery"],
        help="saga workers: manage.py consume_events (default) or the Procfile's Celery workers",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the 1-minute load average to fall below 1 "
        "(a shared machine: other jobs skew every figure)",
    )
    parser.add_argument("--fresh", action="store_true", help="drop and re-create the bench DBs")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    sizes = QUICK if args.quick else FULL
    log_dir = RESULTS / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    ensure_vhost()
    # Two runs at once would empty each other's outbox table and share the cores: one at a time.
    lock = _run_lock()
    if args.wait_quiet:
        _wait_quiet(args.wait_quiet)
    started = time.perf_counter()
    report: dict = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "queue_type": args.queue_type,
        "machine": machine(),
        "git": _git(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "results": {},
        "errors": {},
    }
    _say(f"preparing database {BENCH_DB} (migrate)")
    ensure_database(BENCH_DB, fresh=args.fresh)
    run([PYTHON, "manage.py", "migrate", "--noinput"], env=bench_env())
    os.environ.update(bench_env())
    import django

    django.setup()

    results, errors = report["results"], report["errors"]
    for name in SCENARIOS:
        if name not in only:
            continue
        _say(f"running {name}")
        t0 = time.perf_counter()
        try:
            results[name] = _run_one(name, sizes, args, log_dir, results)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        _say(f"{name} done in {time.perf_counter() - t0:.0f}s")
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["total_seconds"] = round(time.perf_counter() - started, 1)

    text = format_table(report)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(report, indent=2, default=str)
    (RESULTS / "latest.json").write_text(payload + "\n")
    (RESULTS / "latest.txt").write_text(text + "\n")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{stamp}-{report['mode']}.json").write_text(payload + "\n")
    print(json.dumps(_summary(report), indent=2))
    print(f"\nfull results: {RESULTS / 'latest.json'}")
    lock.close()
    return 1 if errors else 0


def _run_one(
    name: str, sizes: Sizes, options: argparse.Namespace, log_dir: Path, done: dict
) -> dict:
    queue_type, producers = options.queue_type, options.latency_producers
    if name == "drain":
        from bench.relay import drain

        return drain(
            n=sizes.drain, rounds=sizes.drain_rounds, queue_type=queue_type, log_dir=log_dir
        )
    if name == "dop":
        from bench.dop import dop_drain

        result = dop_drain(n=sizes.dop, queue_type=queue_type, log_dir=log_dir)
        if "drain" in done:
            result["ours_over_theirs"] = round(
                done["drain"]["relay_msg_per_s"] / result["msg_per_s"], 1
            )
        return result
    if name == "latency":
        from bench.latency import latency

        return latency(
            rate=sizes.latency_rate,
            seconds=sizes.latency_seconds,
            warmup=sizes.latency_warmup,
            producers=producers,
            queue_type=queue_type,
            log_dir=log_dir,
        )
    if name == "retained":
        from bench.relay import retained

        baseline = done.get("drain", {}).get("relay_msg_per_s")
        return retained(
            n=sizes.retained,
            history=sizes.history,
            rounds=sizes.retained_rounds,
            queue_type=queue_type,
            baseline_msg_per_s=baseline,
        )
    if name == "saga":
        from bench.saga import saga

        return saga(
            orders=sizes.saga_orders,
            paced_orders=sizes.saga_paced_orders,
            paced_rate=sizes.saga_paced_rate,
            workers=options.saga_workers,
            log_dir=log_dir,
        )
    raise ValueError(name)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "MISSED")


def _cpu_text(groups: dict[str, float]) -> str:
    """``rabbitmq 52 + postgresql 36 + benchmark process 17 = 105`` (microseconds)."""
    parts = " + ".join(f"{group} {value:.0f}" for group, value in groups.items())
    return f"{parts} = {sum(groups.values()):.0f}"


def _span(values: list[float] | None) -> str:
    """``0.66-0.74`` of a list of figures (``-`` when absent, e.g. in an older report)."""
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def _rows(report: dict) -> list[tuple[str, str, str, str]]:
    r, e = report["results"], report["errors"]
    rows: list[tuple[str, str, str, str]] = []
    if "drain" in r:
        d = r["drain"]
        rows.append(
            (
                f"1 relay drain, {d['messages']:,} rows (in-process)",
                f"{d['relay_msg_per_s']:,.0f} msg/s",
                f"raw confirms {d['raw_msg_per_s']:,.0f} msg/s ({d['raw_best']});"
                f" ratio {d['ratio']:.2f} (target >= 0.8; round by round"
                f" {_span(d.get('ratio_by_round'))}); to basic_publish "
                f"{d['raw_basic_publish_msg_per_s']:,.0f}: {d['ratio_to_basic_publish']:.2f}",
                _verdict(d["ratio"] >= 0.8),
            )
        )
        cpu = d.get("cpu_us_per_msg") or {}
        if cpu.get("relay") and cpu.get("raw"):
            rows.append(
                (
                    "  CPU per message, relay | raw (us)",
                    _cpu_text(cpu["relay"]),
                    _cpu_text(cpu["raw"]),
                    "",
                )
            )
        once = d["relay_once_subprocess"]
        rows.append(
            (
                "  relay_outbox --once, subprocess",
                f"{once['msg_per_s']:,.0f} msg/s",
                f"{once['seconds']:.1f} s wall incl. start-up",
                "",
            )
        )
    if "dop" in r:
        d = r["dop"]
        times = d.get("ours_over_theirs")
        rows.append(
            (
                f"2 django-outbox-pattern drain, {d['messages']:,} rows",
                f"{d['msg_per_s']:,.0f} msg/s",
                (f"ours {times}x faster (target >= 10x); " if times else "")
                + f"confirms {'yes' if d['publisher_confirms'] else 'no'}, "
                f"persistent {'yes' if d['persistent'] else 'no'}",
                _verdict(times >= 10 if times else None),
            )
        )
    if "latency" in r:
        d = r["latency"]
        rows.append(
            (
                f"3 commit->consumer @ {d['target_rate']:.0f}/s, {d['seconds_measured']:.0f} s",
                f"p50 {d['p50_ms']} / p95 {d['p95_ms']} / p99 {d['p99_ms']} / max {d['max_ms']} ms",
                f"{d['events_measured']:,} events, {d['events_missing']} missing, "
                f"{d['achieved_rate']:.0f}/s achieved; target p99 <= 20 ms; p99 per "
                f"{WINDOW_SECONDS} s window {_span([w['p99_ms'] for w in d.get('by_window', [])])};"
                f" producers' worst lag {d['producer_max_lag_ms']:.0f} ms",
                _verdict(d["p99_ms"] <= 20 and d["events_missing"] == 0),
            )
        )
    if "retained" in r:
        d = r["retained"]
        ratio = d.get("ratio_to_drain")
        rows.append(
            (
                f"4 drain {d['messages']:,} with {d['retained_published_rows']:,} retained",
                f"{d['relay_msg_per_s']:,.0f} msg/s",
                (f"ratio to (1) {ratio:.2f} (target >= 0.9); " if ratio else "")
                + f"table {d['table_size_at_end']}",
                _verdict(ratio >= 0.9 if ratio else None),
            )
        )
    if "saga" in r:
        d = r["saga"]
        if d.get("skipped"):
            rows.append(("5 saga (issue 4)", "not run", d["skipped"], "TODO"))
        else:
            b, p, c = d["burst"], d["paced"], d["backlog"]
            rows.append(
                (
                    f"5 saga backlog, {c['orders']} orders ({d['workers']} workers)",
                    f"{c['orders_per_s']} orders/s paid->delivered",
                    f"{c['delivered']}/{c['orders']} delivered; checkout alone "
                    f"{c['placing_orders_per_s']} orders/s; deepest queue: {_deepest(c)}",
                    "",
                )
            )
            rows.append(
                (
                    f"  saga burst, {b['orders']} orders placed live",
                    f"{b['orders_per_s']} orders/s placed->delivered",
                    f"{b['delivered']}/{b['orders']} delivered; checkout->paid median "
                    f"{b['paid_median_ms']:.0f} ms, p99 {b['paid_p99_ms']:.0f} ms (queueing)",
                    "",
                )
            )
            rows.append(
                (
                    f"  saga paced, {p['orders']} orders at {p['rate']:.0f}/s",
                    f"checkout->paid median {p['paid_median_ms']:.0f} ms / p99 "
                    f"{p['paid_p99_ms']:.0f} ms",
                    f"{p['delivered']}/{p['orders']} delivered; checkout->delivered median "
                    f"{p['delivered_median_ms']:.0f} ms",
                    "",
                )
            )
    for name, error in e.items():
        rows.append((name, "FAILED", error[:90], "ERROR"))
    return rows


def _deepest(phase: dict) -> str:
    depths = phase.get("max_queue_depth") or {}
    if not depths:
        return "?"
    name = max(depths, key=depths.get)
    return f"{name} ({depths[name]})"


def format_table(report: dict) -> str:
    """The results as a fixed-width text table, with the machine underneath."""
    rows = [("benchmark", "result", "baseline / detail", "target"), *_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    m = report["machine"]
    lines.append("")
    lines.append(
        f"{report['mode']} run, {report.get('total_seconds', '?')} s; {m.get('nproc')} cores "
        f"({m.get('cpu', '?')}), {m.get('memory_gib', '?')} GiB; PostgreSQL "
        f"{m.get('postgresql', '?')}; RabbitMQ {m.get('rabbitmq', '?')} ({m.get('erlang', '?')});"
        f" Python {m.get('python')}; {report['queue_type']} queue; load average at start "
        f"{report['load_average_at_start'][0]}"
    )
    if report["load_average_at_start"][0] >= BUSY_LOAD:
        lines.append(
            "WARNING: the machine was busy when the run started (load average >= "
            f"{BUSY_LOAD}): other jobs share the cores, so these figures are pessimistic. "
            "Re-run on a quiet machine (--wait-quiet 600)."
        )
    return "\n".join(lines)


def _summary(report: dict) -> dict:
    """The headline figures only (the full JSON has every round)."""
    out: dict = {}
    for name, result in report["results"].items():
        out[name] = {
            k: v
            for k, v in result.items()
            if not isinstance(v, list | dict)
            or k in {"relay_runs_msg_per_s", "raw_by_variant", "ratio_by_round"}
        }
    out["errors"] = report["errors"]
    return out


def _git() -> dict:
    """Which code was measured: HEAD, and whether the relay's code had uncommitted changes."""
    import subprocess

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    return {
        "head": git("rev-parse", "--short", "HEAD"),
        "outbox_uncommitted": bool(git("status", "--porcelain", "--", "outbox")),
    }


def _run_lock() -> psycopg.Connection:
    """Hold a session advisory lock for the whole run (waiting for another run to finish)."""
    conn = connect_db("postgres")
    if not conn.execute("SELECT pg_try_advisory_lock(%s)", [RUN_LOCK_KEY]).fetchone()[0]:
        _say("another benchmark run holds the lock: waiting for it to finish")
        conn.execute("SELECT pg_advisory_lock(%s)", [RUN_LOCK_KEY])
    return conn


def _wait_quiet(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while os.getloadavg()[0] >= BUSY_LOAD and time.monotonic() < deadline:
        _say(f"load average {os.getloadavg()[0]:.2f}: waiting for a quieter machine")
        time.sleep(15)


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
