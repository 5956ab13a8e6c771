"""The relay: moves committed outbox rows to RabbitMQ, in order per aggregate, at least once.

The relay is a pipeline: it claims the next rows and sends them while earlier rows' confirms
are still outstanding, and marks confirmed rows published as their confirms arrive, so the
database and the broker work at the same time instead of taking turns. ``pipeline.Pipeline``
keeps that safe (one row per aggregate in flight, no row claimed twice); ``recorder.Recorder``
commits the outcomes on a second connection while the relay goes on. Nothing is marked
before the broker confirmed it, so a crash anywhere means a duplicate (same ``message_id``),
never a loss. The algorithm is described in docs/outbox.md.
"""

import contextlib
import logging
import random
import select
import signal
import time
from collections.abc import Iterator
from types import FrameType

from django.db import Error as DatabaseError
from django.db import connections

from outbox import metrics
from outbox.broker import CONNECTION_ERRORS
from outbox.claiming import ClaimedRow, claim_batch
from outbox.conf import OutboxSettings, get_settings
from outbox.leases import PartitionLeases
from outbox.logs import event_context
from outbox.pipeline import Pipeline, aggregate_of
from outbox.publisher import Publisher, RoundResult
from outbox.recorder import Recorded, Recorder
from outbox.wakeup import SLICE_SECONDS, Wakeup

logger = logging.getLogger(__name__)


class RelayConnectionError(Exception):
    """``--once`` could not reach the broker or the database (a long-running relay retries)."""


class Relay:
    """Publish outbox rows until stopped (or, with ``once``, until nothing is due)."""

    def __init__(
        self,
        *,
        batch_size: int | None = None,
        partitions: list[int] | None = None,
        once: bool = False,
        settings: OutboxSettings | None = None,
        using: str = "default",
    ) -> None:
        self.settings = settings or get_settings()
        self.using = using
        self.batch_size = batch_size or self.settings.batch_size
        # Rows held in memory at most (claimed, in flight, or waiting for their mark); a new
        # batch is claimed only while a whole one still fits.
        self.max_in_flight = max(self.settings.max_in_flight, self.batch_size)
        self.once = once
        candidates = partitions if partitions is not None else range(self.settings.partitions)
        self.leases = PartitionLeases(
            candidates=list(candidates), total=self.settings.partitions, using=using
        )
        self.publisher = Publisher(
            url=self.settings.broker_url,
            confirm_timeout=self.settings.confirm_timeout,
            max_message_bytes=self.settings.max_message_bytes,
            connect_timeout=self.settings.connect_timeout,
        )
        self.wakeup = Wakeup(using=using)
        self.pipeline = Pipeline()
        self.recorder = Recorder(settings=self.settings, using=using)
        self.published_total = 0
        self._stopping = False
        self._next_rebalance = 0.0
        # Whether rows may be due that are not in memory: a claim is worth making.
        self._more_due = True
        self._next_poll = 0.0
        self._tried: set[int] = set()
        self._claimed_unlogged = 0
        self._publish_seconds = metrics.RELAY_PUBLISH_SECONDS.labels(using)
        self._leased_gauge = metrics.RELAY_LEASED_PARTITIONS.labels(using)

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        """Ask the relay to stop once the rows in flight are settled (SIGTERM/SIGINT handler)."""
        if signum is not None:
            logger.info(
                "received %s, stopping after the rows in flight", signal.Signals(signum).name
            )
        self._stopping = True

    def run(self, *, install_signal_handlers: bool = False) -> int:
        """Run the relay loop; returns how many events were published."""
        if install_signal_handlers:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        logger.info(
            "relay starting on database %r: batch size %d, up to %d rows in flight, "
            "%d partitions, candidates %s",
            self.using,
            self.batch_size,
            self.max_in_flight,
            self.settings.partitions,
            _ranges(self.leases.candidates),
        )
        delays = _backoff(self.settings.reconnect_max_delay)
        try:
            while not self._stopping:
                try:
                    done = self._step()
                except (DatabaseError, *CONNECTION_ERRORS) as exc:
                    self._disconnect(exc)
                    if self.once:
                        raise RelayConnectionError(str(exc)) from exc
                    self._sleep(next(delays))
                    continue
                delays = _backoff(self.settings.reconnect_max_delay)
                if done:
                    break
        finally:
            self._shutdown()
        return self.published_total

    def _step(self) -> bool:
        """One turn: claim if worth it, send what may go, record confirms, then maybe wait.

        Returns True when a ``--once`` run is done: the pipeline was empty and a claim brought
        no row this run has not tried yet (so it does not sit out a failing row's backoff).
        """
        if not self.publisher.connected:
            self.publisher.connect()
            logger.info("connected to the broker")
        self.wakeup.prime()
        self._rebalance_if_due()
        self._finish(self.recorder.finished())
        was_empty = len(self.pipeline) == 0
        new = None
        if self._room():
            if self._more_due:
                new = self._claim(self.batch_size)
            elif places := self.pipeline.refill_places():
                self._refill(places)
        self.publisher.send(self.pipeline.take_ready())
        self._record(self.publisher.collect())
        if self.once and was_empty and new == 0:
            return True
        if self.pipeline.has_ready() or (self._room() and self._claim_due()):
            return False
        self._wait()
        return False

    def _room(self) -> bool:
        """Whether a whole batch more fits in memory."""
        return len(self.pipeline) + self.batch_size <= self.max_in_flight

    def _claim_due(self) -> bool:
        """Whether a claim is worth making: rows may be due, or an aggregate is to refill."""
        return self._more_due or bool(self.pipeline.refill_places())

    def _claim(self, limit: int) -> int:
        """Claim the next batch into the pipeline; returns how many rows are new to this run."""
        full, taken = self._claim_into_pipeline(limit)
        # A full batch means more is probably due: claim again as soon as there is room (also
        # when the pipeline left rows of it out: the next claim passes over their aggregate).
        self._more_due = full
        self._next_poll = time.monotonic() + self.settings.poll_interval
        if not self.once:
            return len(taken)
        new = sum(1 for row in taken if row.id not in self._tried)
        self._tried.update(row.id for row in taken)
        return new

    def _refill(self, places: int) -> None:
        """Claim the next rows of the aggregates that were left out of claims for the rows they
        held and have room again: a claim of ``places`` rows, the exclusions of any claim.

        Cheap where a full claim is not: the aggregates' backlog can be long (a burst of one
        aggregate), and a full claim that leaves them out walks all of it to find the rows of
        others, while this one stops after ``places`` rows. Rows of other aggregates it brings
        are welcome, and say that more of theirs may be due: the relay reads no NOTIFY while
        refills are pending (it does not wait), so the next claim is then a whole batch again,
        not another refill of a few dozen rows.
        """
        refilled = self.pipeline.refilling()
        full, taken = self._claim_into_pipeline(places)
        if full and any(aggregate_of(row) not in refilled for row in taken):
            self._more_due = True

    def _claim_into_pipeline(self, limit: int) -> tuple[bool, list[ClaimedRow]]:
        """Claim up to ``limit`` rows into the pipeline; returns whether the claim brought that
        many (more may be due), and the rows the pipeline took in."""
        batch = claim_batch(
            partitions=self.leases.held,
            limit=limit,
            exclude=self.pipeline.held_ids(),
            exclude_aggregates=self.pipeline.excluded_aggregates(),
            using=self.using,
        )
        if len(batch) < limit:
            self.pipeline.claimed_all_due()
        # Only the rows taken in count: one left out is not tried, and is claimed again.
        taken = self.pipeline.add(batch)
        self._claimed_unlogged += len(taken)
        return len(batch) >= limit, taken

    def _wait(self) -> None:
        """Nothing to do at once: wait for a confirm, a commit of the recorder, a NOTIFY or the
        poll, whichever comes first."""
        sockets = [
            fd
            for fd, busy in (
                (self.publisher.fileno(), self.publisher.in_flight),
                (self.recorder.fileno(), len(self.recorder)),
            )
            if busy and fd is not None
        ]
        if self.once or not self._room():
            # Only confirms and commits can move things on (a --once run with neither claims
            # again; a commit arriving meanwhile is claimed once there is room).
            if sockets:
                select.select(sockets, [], [], SLICE_SECONDS)
            else:
                self._more_due = True
            return
        timeout = max(0.0, self._next_poll - time.monotonic())
        notified = self.wakeup.wait(timeout, lambda: self._stopping, also=sockets)
        if notified or time.monotonic() >= self._next_poll:
            self._more_due = True

    def _record(self, result: RoundResult) -> None:
        """Hand what the broker said to the recorder: marks for confirmed rows, retries for
        failed ones. Their rows stay in memory (and out of claims) until it has committed."""
        self.pipeline.settle(result)
        self.recorder.submit(*self.pipeline.take_outcomes())
        for seconds in self.publisher.take_round_times():
            self._publish_seconds.observe(seconds)
        if result.unsettled:
            self._more_due = True  # they are due again at once
        if result.connection_error is not None:
            raise result.connection_error

    def _finish(self, jobs: list[Recorded]) -> None:
        """Outcomes the recorder committed: let their rows go, count and log them."""
        for job in jobs:
            self.pipeline.recorded(job.published, job.failures)
            self.published_total += len(job.published)
            metrics.count_published(self.using, (row.type for row in job.published))
            self._log_failures(job)
            self._log_outcomes(job)

    def _settle_all(self) -> None:
        """Send nothing more; wait for every confirm outstanding and for its record."""
        self.pipeline.drop_waiting()
        while self.publisher.in_flight:
            self._record(self.publisher.collect(timeout=SLICE_SECONDS))
        self._record(self.publisher.collect())
        self._finish(self.recorder.wait_all())
        self._more_due = True

    def _log_failures(self, job: Recorded) -> None:
        by_row = {f.message.id: f for f in job.failures}
        for row_id, event_id, parked in job.outcomes:
            failure = by_row[row_id]
            event_type = failure.message.type
            metrics.RELAY_FAILED.labels(self.using, event_type).inc()
            if parked:
                metrics.RELAY_PARKED.labels(self.using, event_type).inc()
            with _about(failure.message):
                if parked:
                    logger.error("event %s parked: %s", event_id, failure.error)
                else:
                    logger.warning("event %s not published, retrying: %s", event_id, failure.error)

    def _log_outcomes(self, job: Recorded) -> None:
        if logger.isEnabledFor(logging.DEBUG):  # no per-row work on the hot path otherwise
            for message in job.published:
                with _about(message):
                    logger.debug(
                        "published event %s %s %s:%s#%d",
                        message.event_id,
                        message.type,
                        message.aggregate_type,
                        message.aggregate_id,
                        message.sequence,
                    )
        rows = job.published or [f.message for f in job.failures]
        logger.info(
            "batch: %d claimed, %d published, %d failed, %d in flight (events %s..%s)",
            self._claimed_unlogged,
            len(job.published),
            len(job.failures),
            len(self.pipeline),
            rows[0].event_id,
            rows[-1].event_id,
        )
        self._claimed_unlogged = 0

    def _rebalance_if_due(self) -> None:
        now = time.monotonic()
        if now < self._next_rebalance and self.leases.held:
            return
        before = self.leases.held
        # A partition is only given up with nothing of it in flight, so order holds.
        after = self.leases.rebalance(before_release=self._settle_all)
        if after != before:
            logger.info("leased partitions: %s", _ranges(after) or "none")
            self._leased_gauge.set(len(after))
            self._more_due = True
        self._next_rebalance = now + self.settings.lease_interval

    def _disconnect(self, exc: BaseException) -> None:
        """Drop every connection after an error; they are re-opened on the next iteration."""
        logger.warning("connection problem, reconnecting: %s: %s", type(exc).__name__, exc)
        self.publisher.close()
        self.wakeup.close()
        # Rows in flight or being recorded are published again (their confirms died with the
        # connection, or their mark was not committed). The recorder's session is closed too:
        # if the database restarted, it is dead, and the first mark would fail on it.
        self.recorder.abandon()
        self.pipeline.clear()
        self._more_due = True
        # The partition locks died with the session (or will): forget them and re-lease.
        self.leases.held = []
        self._leased_gauge.set(0)
        with contextlib.suppress(DatabaseError):
            connections[self.using].close()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, deadline - time.monotonic()))

    def _shutdown(self) -> None:
        try:
            if self.publisher.connected and len(self.pipeline):
                self._settle_all()
            if self.leases.held:
                self.leases.release_all()
        except (DatabaseError, *CONNECTION_ERRORS) as exc:
            # The session is gone, and its locks with it; unmarked rows go out again. Said, so
            # the duplicates that follow a stop have a reason in the log.
            logger.warning(
                "stopping without settling the rows in flight (published again later): %s: %s",
                type(exc).__name__,
                exc,
            )
        self.publisher.close()
        self.wakeup.close()
        self.recorder.close()
        self._leased_gauge.set(0)
        logger.info("relay stopped, %d events published", self.published_total)


def _about(message: ClaimedRow) -> contextlib.AbstractContextManager[None]:
    """Log lines in the block are about this row (its producer is the service of the line)."""
    return event_context(
        event_id=message.event_id,
        event_type=message.type,
        correlation_id=message.correlation_id,
        service=message.source,
    )


def _backoff(cap: float) -> Iterator[float]:
    """Reconnect delays: 0.5 s doubling up to ``cap``, with jitter so relays do not stampede."""
    delay = 0.5
    while True:
        yield min(delay, cap) * (0.5 + random.random() / 2)
        delay *= 2


def _ranges(numbers: list[int]) -> str:
    """Compact "0-3,8" form of a sorted list of partitions, for logs."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)
