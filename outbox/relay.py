"""The relay: moves committed outbox rows to RabbitMQ, in order per aggregate, at least once.

One iteration: renew partition leases, claim due rows of those partitions, publish them in
confirm rounds ("waves"), then mark the acked rows published and schedule retries for the
failed ones. Nothing is marked before the broker confirmed it, so a crash anywhere means a
duplicate (same ``message_id``), never a loss. The algorithm is described in docs/outbox.md.
"""

import contextlib
import logging
import os
import random
import signal
import time
from collections.abc import Iterator
from types import FrameType

from django.db import Error as DatabaseError
from django.db import connections

from outbox import metrics
from outbox.broker import CONNECTION_ERRORS
from outbox.claiming import claim_batch, mark_published, plan_waves, record_failures
from outbox.conf import OutboxSettings, get_settings
from outbox.leases import PartitionLeases
from outbox.logs import event_context
from outbox.models import OutboxMessage
from outbox.publisher import Failure, Publisher
from outbox.wakeup import Wakeup

logger = logging.getLogger(__name__)

# Test-only: seconds to sleep after the broker confirmed a batch and before it is marked
# published, so a test can SIGKILL the relay in exactly that window. Never set in production.
TEST_PAUSE_ENV = "OUTBOX_TEST_PAUSE_AFTER_PUBLISH"

AggregateKey = tuple[str, str]


class RelayConnectionError(Exception):
    """``--once`` could not reach the broker or the database (a long-running relay retries)."""


def _aggregate(message: OutboxMessage) -> AggregateKey:
    return (message.aggregate_type, message.aggregate_id)


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
        self.published_total = 0
        self._stopping = False
        self._next_rebalance = 0.0
        self._tried: set[int] = set()
        self._test_pause = float(os.environ.get(TEST_PAUSE_ENV) or 0)
        self._publish_seconds = metrics.RELAY_PUBLISH_SECONDS.labels(using)
        self._leased_gauge = metrics.RELAY_LEASED_PARTITIONS.labels(using)

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        """Ask the relay to stop after the current batch (also the SIGTERM/SIGINT handler)."""
        if signum is not None:
            logger.info(
                "received %s, stopping after the current batch", signal.Signals(signum).name
            )
        self._stopping = True

    def run(self, *, install_signal_handlers: bool = False) -> int:
        """Run the relay loop; returns how many events were published."""
        if install_signal_handlers:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        logger.info(
            "relay starting on database %r: batch size %d, %d partitions, candidates %s",
            self.using,
            self.batch_size,
            self.settings.partitions,
            _ranges(self.leases.candidates),
        )
        delays = _backoff(self.settings.reconnect_max_delay)
        try:
            while not self._stopping:
                try:
                    claimed, new = self._iteration()
                except (DatabaseError, *CONNECTION_ERRORS) as exc:
                    self._disconnect(exc)
                    if self.once:
                        raise RelayConnectionError(str(exc)) from exc
                    self._sleep(next(delays))
                    continue
                delays = _backoff(self.settings.reconnect_max_delay)
                if self.once:
                    if new == 0:
                        break
                elif claimed < self.batch_size:
                    # A full batch means more is probably due: go again without waiting.
                    self.wakeup.wait(self.settings.poll_interval, lambda: self._stopping)
        finally:
            self._shutdown()
        return self.published_total

    def _iteration(self) -> tuple[int, int]:
        """Connect if needed, claim and publish one batch; returns (rows claimed, rows new).

        "New" is only tracked with ``once``: rows this run has not tried yet. A ``--once`` run
        stops when a batch brings nothing new, so it does not sit out a failing row's backoff.
        """
        if not self.publisher.connected:
            self.publisher.connect()
            logger.info("connected to the broker")
        self.wakeup.prime()
        partitions = self._leased_partitions()
        batch = claim_batch(partitions=partitions, limit=self.batch_size, using=self.using)
        new = len(batch)
        if self.once:
            new = sum(1 for message in batch if message.id not in self._tried)
            self._tried.update(message.id for message in batch)
        if batch:
            self.process(batch)
        return len(batch), new

    def process(self, batch: list[OutboxMessage]) -> None:
        """Publish a claimed batch wave by wave, then record the outcome in the database."""
        published: list[OutboxMessage] = []
        failures: list[Failure] = []
        held_back: set[AggregateKey] = set()
        connection_error: BaseException | None = None
        for wave in plan_waves(batch):
            # An aggregate whose earlier row failed must not get its later rows out first.
            to_send = [m for m in wave if _aggregate(m) not in held_back]
            if not to_send:
                continue
            started = time.perf_counter()
            result = self.publisher.publish(to_send)
            self._publish_seconds.observe(time.perf_counter() - started)
            published += result.published
            failures += result.failed
            held_back |= {_aggregate(f.message) for f in result.failed}
            held_back |= {_aggregate(m) for m in result.unsettled}
            if result.connection_error is not None:
                connection_error = result.connection_error
                break
        if self._test_pause and published:
            logger.warning("%s: pausing %.1fs before marking", TEST_PAUSE_ENV, self._test_pause)
            time.sleep(self._test_pause)
        mark_published(published, using=self.using)
        metrics.count_published(self.using, (message.type for message in published))
        self._record_failures(failures)
        self.published_total += len(published)
        self._log_batch(batch, published, failures)
        if connection_error is not None:
            raise connection_error

    def _record_failures(self, failures: list[Failure]) -> None:
        outcomes = record_failures(
            failures,
            max_attempts=self.settings.max_attempts,
            backoff_base=self.settings.backoff_base,
            backoff_max=self.settings.backoff_max,
            using=self.using,
        )
        by_row = {f.message.id: f for f in failures}
        for row_id, event_id, parked in outcomes:
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

    def _log_batch(
        self, batch: list[OutboxMessage], published: list[OutboxMessage], failures: list[Failure]
    ) -> None:
        if logger.isEnabledFor(logging.DEBUG):  # no per-row work on the hot path otherwise
            for message in published:
                with _about(message):
                    logger.debug(
                        "published event %s %s %s:%s#%d",
                        message.event_id,
                        message.type,
                        message.aggregate_type,
                        message.aggregate_id,
                        message.sequence,
                    )
        logger.info(
            "batch: %d claimed, %d published, %d failed, %d left for later (events %s..%s)",
            len(batch),
            len(published),
            len(failures),
            len(batch) - len(published) - len(failures),
            batch[0].event_id,
            batch[-1].event_id,
        )

    def _leased_partitions(self) -> list[int]:
        now = time.monotonic()
        if now >= self._next_rebalance or not self.leases.held:
            before = self.leases.held
            after = self.leases.rebalance()
            if after != before:
                logger.info("leased partitions: %s", _ranges(after) or "none")
                self._leased_gauge.set(len(after))
            self._next_rebalance = now + self.settings.lease_interval
        return self.leases.held

    def _disconnect(self, exc: BaseException) -> None:
        """Drop every connection after an error; they are re-opened on the next iteration."""
        logger.warning("connection problem, reconnecting: %s: %s", type(exc).__name__, exc)
        self.publisher.close()
        self.wakeup.close()
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
            if self.leases.held:
                self.leases.release_all()
        except DatabaseError:
            pass  # the session is gone, and its locks with it
        self.publisher.close()
        self.wakeup.close()
        self._leased_gauge.set(0)
        logger.info("relay stopped, %d events published", self.published_total)


def _about(message: OutboxMessage) -> contextlib.AbstractContextManager[None]:
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
