"""Recording what the broker said, on a database connection of its own, in a worker thread.

Marking 500 rows published is one ``UPDATE``, but it writes a new version of every row and an
entry in each of the table's indexes: as long as encoding and sending the next rows. Done in a
thread, the relay keeps sending while PostgreSQL writes (psycopg releases the GIL while it
waits), instead of taking turns. One job at a time, in the order the confirms came; what
arrives while a job runs is committed together by the next one (one UPDATE for all of it: the
busier the relay, the larger and cheaper per row its marks). The relay keeps the rows of a job
in memory (and out of its claims) until the job is committed, and learns that through
``finished()``; a socket becomes readable when a job ends, so the relay can wait for it
together with the broker.
"""

import contextlib
import logging
import os
import socket
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from django.db import Error as DatabaseError
from django.db import connections

from outbox.claiming import ClaimedRow, mark_published, record_failures
from outbox.conf import OutboxSettings
from outbox.publisher import Failure

logger = logging.getLogger(__name__)

# Test-only: seconds to sleep after the broker confirmed rows and before they are marked
# published, so a test can SIGKILL the relay in exactly that window. Never set in production.
TEST_PAUSE_ENV = "OUTBOX_TEST_PAUSE_AFTER_PUBLISH"


@dataclass
class Recorded:
    """A committed job: rows now marked published, failures recorded (with their outcome)."""

    published: list[ClaimedRow]
    failures: list[Failure]
    outcomes: list[tuple[int, str, bool]]  # (row id, event id, parked) per failure


class Recorder:
    """Commits marks and failures in a worker thread, in order."""

    def __init__(self, *, settings: OutboxSettings, using: str = "default") -> None:
        self.settings = settings
        self.using = using
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-recorder")
        self._jobs: deque[tuple[Future, list[ClaimedRow], list[Failure]]] = deque()
        # Outcomes waiting for the running job to end, committed together by the next one.
        self._next_published: list[ClaimedRow] = []
        self._next_failures: list[Failure] = []
        self._signal_in, self._signal_out = socket.socketpair()
        self._signal_in.setblocking(False)
        self._test_pause = float(os.environ.get(TEST_PAUSE_ENV) or 0)

    def __len__(self) -> int:
        """Jobs running or waiting (rows whose outcome is not committed yet, if not 0)."""
        return len(self._jobs) + bool(self._next_published or self._next_failures)

    def fileno(self) -> int:
        """Readable when a job has ended (committed or failed)."""
        return self._signal_in.fileno()

    def submit(self, published: list[ClaimedRow], failures: list[Failure]) -> None:
        """Mark ``published`` and record ``failures``, after everything submitted before."""
        self._next_published += published
        self._next_failures += failures
        self._start_next()

    def _start_next(self) -> None:
        if self._jobs or not (self._next_published or self._next_failures):
            return
        published, failures = self._next_published, self._next_failures
        self._next_published, self._next_failures = [], []
        future = self._executor.submit(self._commit, published, failures)
        # Signalled once the future is done (not from inside the job), so a relay that reads
        # the signal always finds the job finished: no wake-up lost in between.
        future.add_done_callback(self._signal)
        self._jobs.append((future, published, failures))

    def finished(self, timeout: float = 0.0) -> list[Recorded]:
        """The jobs that ended, oldest first (waiting up to ``timeout`` for the oldest).

        Raises the database error of a failed job: its rows stay pending and are published
        again after the relay reconnects.
        """
        with contextlib.suppress(BlockingIOError):
            self._signal_in.recv(4096)
        done: list[Recorded] = []
        while self._jobs:
            future, published, failures = self._jobs[0]
            if not done and timeout and not future.done():
                with contextlib.suppress(TimeoutError):
                    future.result(timeout)
            if not future.done():
                break
            self._jobs.popleft()
            done.append(Recorded(published, failures, future.result()))
            self._start_next()
        return done

    def wait_all(self) -> list[Recorded]:
        """Every outstanding job, once it ended."""
        done: list[Recorded] = []
        while len(self):
            done += self.finished(timeout=1.0)
        return done

    def abandon(self) -> None:
        """Forget outstanding jobs after a connection problem (their rows are published again);
        wait for the one running, then close the thread's database connection.

        Closed whether or not a job failed on it: after a database restart its session is as
        dead as the relay's, and the first mark after reconnecting would fail on it, costing a
        second reconnect and publishing again the rows confirmed meanwhile. Closed on the
        worker thread (Django's connections are per thread), after the running job, so no job
        is cut short; the next job opens a new one.
        """
        self._next_published, self._next_failures = [], []
        for future, _, _ in self._jobs:
            with contextlib.suppress(Exception):
                future.exception()
        self._jobs.clear()
        with contextlib.suppress(Exception):
            self._executor.submit(self._close_connection).result()

    def close(self) -> None:
        """Close the thread's database connection and stop the thread."""
        self.abandon()
        self._executor.shutdown(wait=True)
        self._signal_in.close()
        self._signal_out.close()

    def _commit(
        self, published: list[ClaimedRow], failures: list[Failure]
    ) -> list[tuple[int, str, bool]]:
        try:
            if self._test_pause and published:
                logger.warning("%s: pausing %.1fs before marking", TEST_PAUSE_ENV, self._test_pause)
                time.sleep(self._test_pause)
            mark_published(published, using=self.using)
            return record_failures(
                failures,
                max_attempts=self.settings.max_attempts,
                backoff_base=self.settings.backoff_base,
                backoff_max=self.settings.backoff_max,
                using=self.using,
            )
        except DatabaseError:
            self._close_connection()  # reopened by the next job
            raise

    def _signal(self, future: Future) -> None:
        with contextlib.suppress(OSError):
            self._signal_out.send(b"\0")

    def _close_connection(self) -> None:
        with contextlib.suppress(DatabaseError):
            connections[self.using].close()
