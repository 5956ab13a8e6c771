"""The chaos run's table: faults by kind with their recovery and latency, totals, checks."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from bench.common import median
from chaos.check import Report

SHOWN_VIOLATIONS = 10


def _lat(stats: dict[str, Any]) -> str:
    if not stats.get("n"):
        return "-"
    return f"{stats['p50']:.0f} / {stats['p95']:.0f} / {stats['max']:.0f}"


def render(report: Report) -> str:
    f = report.figures
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(f.get("outcomes", {}).items()))
    lines = [
        "",
        f"chaos run: {f.get('mode')}, seed {f.get('seed')}, {f.get('seconds')} s, "
        f"{f.get('workers')} workers, {f.get('rate')} orders/s",
        "",
        f"orders committed      {f.get('orders')} ({outcomes})",
        f"  found after a lost answer  {f.get('orders_recovered_after_lost_answer')}",
        f"  API errors retried  {f.get('api_errors')}",
        f"events published      {f.get('events_published')}",
        f"inbox rows            {f.get('inbox_rows')}",
        f"duplicates absorbed   {f.get('duplicates_absorbed')} "
        f"({f.get('duplicates_from_copies')} from republished copies, the rest from crashes)",
        f"reordered by a retry  {f.get('reordered_by_retry')} (handled after a later event of "
        "its aggregate because it came back from a retry queue)",
        f"poison dead-lettered  {f.get('poison_dead_lettered')}",
        f"e-mails               {f.get('notification_rows')} rows, "
        f"{f.get('mails_written')} written, {f.get('mail_message_ids')} distinct Message-IDs",
        f"lost                  {f.get('lost')}",
        f"double effects        {f.get('double_effects')}",
        "latency placed -> final, ms (p50 / p95 / max): "
        f"outside faults {_lat(f.get('latency_baseline_ms', {}))}, "
        f"all orders {_lat(f.get('latency_all_ms', {}))}",
        "",
    ]
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for fault in report.faults:
        by_kind[fault["kind"]].append(fault)
    header = (
        f"{'fault':<26}{'n':>3}{'hit':>5}{'fault s':>9}{'recovery s':>14}"
        f"{'orders hit':>12}  latency of those orders, ms (p50 / max)"
    )
    lines += [header, "-" * len(header)]
    for kind, faults in sorted(by_kind.items()):
        recovery = [x["recovery_s"] for x in faults]
        latency = [x["affected_latency_ms"] for x in faults if x["affected_latency_ms"].get("n")]
        p50 = median([x["p50"] for x in latency]) if latency else None
        worst = max((x["max"] for x in latency), default=None)
        lat = f"{p50:.0f} / {worst:.0f}" if latency else "-"
        lines.append(
            f"{kind:<26}{len(faults):>3}{sum(x['hit'] for x in faults):>5}"
            f"{median([x['duration_s'] for x in faults]):>9.1f}"
            f"{median(recovery):>7.1f} /{max(recovery):>5.1f}"
            f"{sum(x['affected_orders'] for x in faults):>12}  {lat}"
        )
    lines += ["", "(recovery: from the fault until every order in flight during it was final)", ""]
    for name, violations in report.checks.items():
        lines.append(f"{'PASS' if not violations else 'FAIL'}  {name}")
        for violation in violations[:SHOWN_VIOLATIONS]:
            lines.append(f"        {violation}")
        if len(violations) > SHOWN_VIOLATIONS:
            lines.append(f"        ... and {len(violations) - SHOWN_VIOLATIONS} more")
    lines.append("")
    lines.append("RESULT: " + ("PASS" if report.ok else "FAIL"))
    return "\n".join(lines)
