"""Consuming a service's queue: the kombu consumer both workers share, and the standalone loop.

Two front-ends, one path: the Celery bootstep (:mod:`outbox.consumer.bootstep`) and
``manage.py consume_events`` both build their consumer with :func:`build_consumer`, so every
delivery goes through :meth:`Dispatcher.on_message` in the process's main thread.
"""

import logging
import signal
import threading
import time
from collections import Counter
from types import FrameType
from typing import Any

import amqp
import kombu

from outbox.conf import get_settings
from outbox.consumer.conf import get_consumer_settings
from outbox.consumer.dispatcher import Dispatcher
from outbox.consumer.service import ConsumerService
from outbox.exceptions import OutboxError

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # how often the loop wakes to check the stop flag and send heartbeats
RECONNECT_MAX_DELAY = 30.0


class QueueMissing(OutboxError):
    """The service's queue does not exist: ``manage.py setup_broker`` has not been run."""


def ensure_queue_exists(channel: Any, service: ConsumerService) -> None:
    """Fail with a clear message instead of a bare 404 when the topology is not declared.

    Workers never declare queues themselves: topology belongs to ``setup_broker`` alone, so a
    worker started against an undeclared broker cannot create a queue with the wrong arguments.
    """
    try:
        channel.queue_declare(service.queue_name, passive=True)
    except amqp.exceptions.NotFound as exc:
        raise QueueMissing(
            f"queue {service.queue_name!r} does not exist: run `manage.py setup_broker` first"
        ) from exc


def build_consumer(channel: Any, dispatcher: Dispatcher) -> kombu.Consumer:
    """The kombu consumer of the service's queue, with a bounded prefetch window.

    ``on_message`` (not ``callbacks``) hands us the raw delivery: kombu would otherwise decode the
    body itself and fail before we could dead-letter a malformed one with a reason.
    """
    service = dispatcher.service
    return kombu.Consumer(
        channel,
        queues=[kombu.Queue(service.queue_name, no_declare=True)],
        on_message=dispatcher.on_message,
        prefetch_count=service.prefetch,
        tag_prefix=f"{service.name}-",
    )


class StandaloneWorker:
    """``consume_events``: the bootstep's loop without Celery (debugging, tests, small setups)."""

    def __init__(self, service: ConsumerService, *, exit_when_idle: float | None = None) -> None:
        self.service = service
        self.exit_when_idle = exit_when_idle
        self.dispatcher = Dispatcher(service)
        self.stop_event = threading.Event()
        self._reconnect_delay = 1.0

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT finish the delivery in hand, then stop (unacked prefetch is returned)."""

        def stop(signum: int, frame: FrameType | None) -> None:
            logger.info("consumer %s: signal %s, stopping", self.service.name, signum)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run(self) -> Counter[str]:
        """Consume until stopped (or idle for ``exit_when_idle`` s); reconnect on broker loss."""
        try:
            while not self.stop_event.is_set():
                connection = kombu.Connection(
                    get_settings().broker_url, heartbeat=get_consumer_settings().heartbeat
                )
                try:
                    self._consume(connection)
                    break  # stopped, or idle long enough
                except (OSError, *connection.connection_errors) as exc:
                    logger.warning(
                        "consumer %s: broker connection lost (%s); reconnecting in %.0fs",
                        self.service.name,
                        exc,
                        self._reconnect_delay,
                    )
                    self.stop_event.wait(self._reconnect_delay)
                    self._reconnect_delay = min(self._reconnect_delay * 2, RECONNECT_MAX_DELAY)
                finally:
                    connection.release()
        finally:
            self.dispatcher.close()
        logger.info("consumer %s: stopped %s", self.service.name, dict(self.dispatcher.stats))
        return self.dispatcher.stats

    def _consume(self, connection: kombu.Connection) -> None:
        """One connection's life: consume until stopped or idle."""
        channel = connection.channel()
        ensure_queue_exists(channel, self.service)
        with build_consumer(channel, self.dispatcher):
            logger.info("consumer %s: consuming %s", self.service.name, self.service.queue_name)
            self._reconnect_delay = 1.0
            self._drain(connection)

    def _drain(self, connection: kombu.Connection) -> None:
        last_activity, seen = time.monotonic(), self._seen()
        poll = min(POLL_SECONDS, self.exit_when_idle / 4) if self.exit_when_idle else POLL_SECONDS
        while not self.stop_event.is_set():
            try:
                connection.drain_events(timeout=poll)
            except TimeoutError:
                connection.heartbeat_check()
            if self._seen() != seen:
                last_activity, seen = time.monotonic(), self._seen()
            elif self.exit_when_idle and time.monotonic() - last_activity >= self.exit_when_idle:
                return

    def _seen(self) -> int:
        return sum(self.dispatcher.stats.values())
