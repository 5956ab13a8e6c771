"""CPU seconds spent by the broker, PostgreSQL and this process while a benchmark runs (Linux).

On 2 cores the relay, PostgreSQL and RabbitMQ share the CPU, so a throughput figure alone does
not say what limits it. ``CpuMeter`` samples ``/proc/<pid>/stat`` of every ``beam.smp``
(RabbitMQ) and ``postgres`` process a few times a second, plus this process's own
``os.times()``, and reports the CPU seconds each group used between start and stop. Processes
that start during the run (a relay's extra connections) count from zero; one that exits counts
up to its last sample, so at most one sampling interval of its CPU is missed. The meter's own
thread is not charged to the benchmark process: it reads the known processes every 50 ms and
looks for new ones (a walk of all of ``/proc``, ~3 ms) only every 0.5 s. Where ``/proc`` does
not exist the meter reports nothing (``{}``).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

GROUPS = {"beam.smp": "rabbitmq", "postgres": "postgresql"}
INTERVAL = 0.05
SCAN_EVERY = 10  # intervals between two walks of /proc for new processes
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _read(pid: int) -> tuple[str, float] | None:
    """(group, CPU seconds) of a process we measure, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    group = GROUPS.get(name)
    if group is None:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return group, (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system


class CpuMeter:
    """``with CpuMeter() as meter: ...`` then ``meter.seconds``: CPU seconds per group."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._first: dict[int, tuple[str, float]] = {}
        self._last: dict[int, float] = {}
        self._started = False
        self._meter_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-cpu-meter", daemon=True)

    def __enter__(self) -> CpuMeter:
        if Path("/proc/self/stat").exists():
            self._started = True
            self._sample(first=True)
            self._own = _own_seconds()  # after the first walk of /proc: not the run's
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._started:
            return
        own = _own_seconds() - self._own
        self._stop.set()
        self._thread.join()
        own -= self._meter_seconds
        self._sample(first=False)
        totals: dict[str, float] = {"benchmark process": own}
        for pid, (group, first) in self._first.items():
            totals[group] = totals.get(group, 0.0) + self._last.get(pid, first) - first
        self.seconds = {group: round(value, 2) for group, value in totals.items()}

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(INTERVAL):
            ticks += 1
            self._sample(first=False, scan=ticks % SCAN_EVERY == 0)
        self._meter_seconds = time.thread_time()  # this thread's own CPU, all of it

    def _sample(self, *, first: bool, scan: bool = True) -> None:
        if scan:
            pids = [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]
        else:
            pids = list(self._first)
        for pid in pids:
            reading = _read(pid)
            if reading is None:
                continue
            group, seconds = reading
            if pid not in self._first:
                # Born during the run: everything it used belongs to the run.
                self._first[pid] = (group, seconds if first else 0.0)
            self._last[pid] = seconds
