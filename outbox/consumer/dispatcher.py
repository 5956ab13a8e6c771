"""The one code path every delivery goes through, whichever worker (Celery bootstep or command).

For each delivery the dispatcher decides exactly one of:

* **handled** — envelope parsed, payload valid, handler ran in ``transaction.atomic`` together
  with the inbox insert; acknowledged only *after* the commit (a crash in between redelivers the
  event, and the inbox turns the redelivery into a duplicate).
* **duplicate** — the inbox already has ``(service, event id)``: acknowledged and ignored.
* **retried** — transient failure (:class:`RetryLater`, a database error, any unexpected
  exception): a copy goes to ``<svc>.retry.<n>`` with a jittered exponential ``expiration`` and
  comes back to ``<svc>.events`` when it expires. The copy is confirmed by the broker *before*
  the original is acknowledged, so a crash in between at worst duplicates (inbox again).
* **dead** — terminal failure (:class:`PermanentError`, malformed body or envelope, a signature
  that does not verify — ``outbox.consumer.verification`` —, unknown type or version, schema
  violation) or retries exhausted: a copy with ``x-death-reason`` goes to
  ``<svc>.dead`` (confirmed), then the original is acknowledged.

We never ``reject(requeue=True)`` as a retry mechanism: a quorum queue redelivers at once (a hot
loop) and counts it against ``x-delivery-limit``. Requeueing is kept for the one case where the
copy could not be published (broker trouble), after a pause; the delivery limit is the backstop.
"""

import logging
import random
import time
from collections import Counter
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import amqp
from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
    connections,
    transaction,
)
from jsonschema.exceptions import best_match
from kombu.message import Message

from outbox import logs, metrics, tracing
from outbox.consumer.conf import get_consumer_settings
from outbox.consumer.events import ReceivedEvent, parse_event
from outbox.consumer.inbox import inbox_insert, inbox_mark_handled, sequence_advance
from outbox.consumer.publishing import ConfirmedPublisher, CopyNotPublished
from outbox.consumer.service import ConsumerService, Handler
from outbox.consumer.verification import verify_event
from outbox.exceptions import PermanentError, RetryLater, UnknownEventType
from outbox.registry import get_event_type, get_validator
from outbox.signing import InvalidSignature

logger = logging.getLogger(__name__)

RETRY_COUNT_HEADER = "x-retry-count"
# ``stats`` keys that the Prometheus counter spells out (outbox_consumer_events{outcome=...}).
_METRIC_OUTCOMES = {"dead": "dead_lettered"}
# Headers the broker adds when it dead-letters (here: when a retry copy expires). A retry copy is
# a fresh publish; dropping them keeps its headers from growing. Dead copies keep everything.
_BROKER_DEATH_HEADERS = ("x-death", "x-first-death-", "x-last-death-")
# A pause before requeueing when the broker would not take a copy: no hot loop on a sick broker.
REQUEUE_PAUSE_SECONDS = 1.0


class Decision(Enum):
    """What to tell the broker about the original delivery."""

    ACK = "ack"
    REQUEUE = "requeue"


def retry_delay(retry: int, *, base: float, cap: float) -> float:
    """Seconds before retry number ``retry`` (1-based): exponential, capped, "equal jitter".

    The ceiling doubles per retry; the delay is drawn from [ceiling/2, ceiling], so retries of
    events that failed together spread out (no thundering herd on a recovering database) while
    the delay still grows with every attempt.
    """
    ceiling = min(cap, base * 2 ** (retry - 1))
    return random.uniform(ceiling / 2, ceiling)


class Dispatcher:
    """Handles deliveries of one service's queue; ``on_message`` is the kombu callback."""

    def __init__(self, service: ConsumerService) -> None:
        self.service = service
        self.settings = get_consumer_settings()
        self.publisher = ConfirmedPublisher(confirm_timeout=self.settings.publish_timeout)
        self.stats: Counter[str] = Counter()

    def on_message(self, message: Message) -> None:
        """Decide, then ack or requeue. Never raises, except for broker errors on the ack itself.

        An exception escaping a ``ConsumerStep`` callback can stop the Celery worker, so every
        failure of the handling is caught and turned into a decision; a failing ack means the
        channel is gone, which the caller must see (the message will be redelivered anyway).
        """
        try:
            decision = self.dispatch(message)
        except Exception:
            # A bug in the framework itself (handlers' errors are caught inside dispatch).
            logger.exception("consumer %s: unexpected failure; requeueing", self.service.name)
            self._count("requeued", self._wire_type(message))
            time.sleep(REQUEUE_PAUSE_SECONDS)
            decision = Decision.REQUEUE
        if decision is Decision.ACK:
            message.ack()
        else:
            message.reject(requeue=True)

    def close(self) -> None:
        """Release the publisher's connection."""
        self.publisher.close()

    def dispatch(self, message: Message) -> Decision:
        """Handle one delivery and return what to do with it (does not ack by itself).

        The handling runs in a child span of the event's ``traceparent`` (events the handler
        records continue the trace) and every line logged meanwhile names the event.
        """
        headers = message.headers or {}
        with (
            tracing.span(tracing.from_headers(headers)),
            logs.event_context(
                event_id=message.properties.get("message_id") or headers.get("ce-id") or "",
                event_type=str(headers.get("ce-type") or ""),
                correlation_id=str(headers.get("ce-correlationid") or ""),
                service=self.service.name,
            ),
        ):
            return self._dispatch(message)

    def _dispatch(self, message: Message) -> Decision:
        received_at = datetime.now(UTC)
        retries = _retry_count(message.headers)
        try:
            event = parse_event(message.body, message.properties)
        except PermanentError as exc:
            return self._dead(message, reason=str(exc), attempts=retries + 1, event=None)
        # The parsed envelope names the event best (e.g. a django-outbox-pattern message has no
        # ``ce-*`` headers, its type and correlation come from elsewhere).
        with logs.event_context(
            event_id=event.id,
            event_type=event.type,
            correlation_id=event.correlation_id,
            service=self.service.name,
        ):
            try:
                # Before anything reads the payload: an unsigned, forged or altered event, or one
                # signed with another source's key, is dead-lettered with the reason, never
                # handled. django-outbox-pattern's messages cannot be signed: admitted only where
                # opted in.
                if event.outbox_pattern:
                    self._admit_outbox_pattern(event)
                else:
                    verify_event(event, message.properties)
                handler = self._resolve(event)
            except PermanentError as exc:
                decision = self._dead(message, reason=str(exc), attempts=retries + 1, event=None)
                if isinstance(exc, InvalidSignature) and decision is Decision.ACK:
                    metrics.CONSUMER_SIGNATURE_FAILURES.labels(self.service.name, exc.kind).inc()
                return decision
            return self._handle(message, event, handler, retries=retries, received_at=received_at)

    def _handle(
        self,
        message: Message,
        event: ReceivedEvent,
        handler: Handler,
        *,
        retries: int,
        received_at: datetime,
    ) -> Decision:
        """Apply a parsed, admitted event and decide: handled, duplicate, retry or dead."""
        started = time.perf_counter()
        try:
            handled = self._apply(event, handler, attempts=retries + 1, received_at=received_at)
        except PermanentError as exc:
            self._observe_handling(event, started)
            return self._dead(message, reason=str(exc), attempts=retries + 1, event=event)
        except Exception as exc:
            self._observe_handling(event, started)
            return self._retry(message, event, exc, retries=retries)
        # Replayed deliveries name their run in the logs (docs/replay.md).
        replay = {"replay": event.replay_run or "yes"} if event.replay else {}
        if not handled:
            self._count("duplicate", event.type)
            self._log(logging.INFO, "duplicate ignored", event, **replay)
            return Decision.ACK
        self._observe_handling(event, started)
        self._count("handled", event.type)
        self._log(logging.INFO, "handled", event, attempts=retries + 1, **replay)
        if self.settings.pause_before_ack:  # TEST-ONLY hook, see conf.PAUSE_BEFORE_ACK_ENV
            self._log(logging.WARNING, "committed; pausing before ack (test hook)", event)
            time.sleep(self.settings.pause_before_ack)
        return Decision.ACK

    def apply(self, event: ReceivedEvent) -> bool:
        """Validate and handle an already parsed event in this process, without a broker: the
        handling path of a delivery (schema, inbox, handler, one transaction) minus the ack and
        the retry/dead copies — errors propagate. False for a duplicate. For tests and tools."""
        handler = self._resolve(event)
        return self._apply(event, handler, attempts=1, received_at=datetime.now(UTC))

    def _admit_outbox_pattern(self, event: ReceivedEvent) -> None:
        """Refuse django-outbox-pattern's messages unless this service opted in.

        They carry no envelope and no signature: accepting them is an explicit, per-service
        decision for a switch-over window (docs/migrating-from-django-outbox-pattern.md).
        """
        if event.outbox_pattern and self.service.name not in self.settings.accept_outbox_pattern:
            raise PermanentError(
                f"a django-outbox-pattern message (dop-msg-id {event.id}): {self.service.name} "
                "does not accept them (OUTBOX_CONSUMER_ACCEPT_OUTBOX_PATTERN)"
            )

    def _resolve(self, event: ReceivedEvent) -> Handler:
        """The handler for the event, after validating its payload against the registry schema."""
        handler = self.service.handler_for(event.type, event.version)
        if handler is None:
            versions = [v for t, v in self.service.handled_types() if t == event.type]
            if versions:
                raise PermanentError(
                    f"unsupported version {event.version} of {event.type} "
                    f"(handled: {', '.join(f'v{v}' for v in versions)})"
                )
            raise PermanentError(f"no handler for event type {event.type!r}")
        try:
            event_type = get_event_type(event.type, event.version)
        except UnknownEventType as exc:
            raise PermanentError(str(exc)) from exc
        error = best_match(get_validator(event_type).iter_errors(event.payload))
        if error is not None:
            raise PermanentError(
                f"payload fails the schema of {event.type} v{event.version} "
                f"at {error.json_path}: {error.message}"
            )
        return handler

    def _apply(
        self, event: ReceivedEvent, handler: Handler, *, attempts: int, received_at: datetime
    ) -> bool:
        """Run the handler in one transaction with the inbox row; False for a duplicate.

        A connection the database dropped while the worker was idle (a restart, a failover, an
        idle timeout) only shows up as an error on the first statement. It is replaced and the
        event applied again at once: sent to a retry queue instead, the event would be overtaken
        by the next event of its aggregate. Once only, and only when the connection is gone: a
        database that is still down fails again and takes the retry path. Applying again is safe
        even if the lost connection's commit went through — the inbox makes it a duplicate.
        """
        _close_stale_connections()
        before = connections[self.service.database].connection
        try:
            try:
                return self._apply_once(event, handler, attempts=attempts, received_at=received_at)
            except (OperationalError, InterfaceError) as exc:
                if not _connection_lost(self.service.database, before):
                    raise
                self._log(logging.WARNING, f"database connection lost ({exc}); reconnecting", event)
                connections[self.service.database].close()
                return self._apply_once(event, handler, attempts=attempts, received_at=received_at)
        finally:
            _close_stale_connections()

    def _apply_once(
        self, event: ReceivedEvent, handler: Handler, *, attempts: int, received_at: datetime
    ) -> bool:
        """One transaction: inbox row, high-water mark, handler, ``handled_at``."""
        using = self.service.database
        with transaction.atomic(using=using):
            entry_id = inbox_insert(
                service=self.service.name,
                event=event,
                attempts=attempts,
                received_at=received_at,
                using=using,
            )
            if entry_id is None:
                return False
            mark = sequence_advance(service=self.service.name, event=event, using=using)
            if mark is not None and event.sequence is not None and mark > event.sequence:
                self.stats["superseded"] += 1
                # A replay re-delivers old events on purpose: expected, no warning.
                level = logging.INFO if event.replay else logging.WARNING
                self._log(level, f"superseded (applied up to {mark})", event)
            handler(event)
            inbox_mark_handled(entry_id=entry_id, using=using)
        return True

    def _retry(
        self, message: Message, event: ReceivedEvent, exc: Exception, *, retries: int
    ) -> Decision:
        error = f"{type(exc).__name__}: {exc}"
        if retries >= self.service.max_retries:
            reason = f"gave up after {retries + 1} attempts: {error}"
            return self._dead(message, reason=reason, attempts=retries + 1, event=event)
        retry = retries + 1
        delay = retry_delay(retry, base=self.settings.retry_base, cap=self.settings.retry_max)
        headers = {
            key: value
            for key, value in message.headers.items()
            if not key.startswith(_BROKER_DEATH_HEADERS)
        }
        headers.update(_origin(message), **{RETRY_COUNT_HEADER: retry, "x-last-error": error[:500]})
        copy = _copy(message, headers, expiration=str(max(1, round(delay * 1000))))
        queue = self.service.retry_queue(retry)
        try:
            self.publisher.publish(copy, exchange="", routing_key=queue)
        except CopyNotPublished as publish_error:
            return self._requeue(event, f"retry copy not published: {publish_error}")
        self._count("retried", event.type)
        level = logging.INFO if isinstance(exc, RetryLater) else logging.WARNING
        self._log(level, f"retry {retry} in {delay:.2f}s ({error})", event, exc_info=exc)
        return Decision.ACK

    def _dead(
        self, message: Message, *, reason: str, attempts: int, event: ReceivedEvent | None
    ) -> Decision:
        headers = dict(message.headers)
        headers.update(
            _origin(message),
            **{
                "x-death-reason": reason[:1000],
                "x-attempts": attempts,
                "x-dead-service": self.service.name,
                "x-dead-at": datetime.now(UTC).isoformat(),
            },
        )
        try:
            self.publisher.publish(
                _copy(message, headers),
                exchange=self.service.dead_letter_exchange,
                routing_key=self.service.dead_letter_queue,
            )
        except CopyNotPublished as publish_error:
            return self._requeue(event, f"dead-letter copy not published: {publish_error}")
        self._count("dead", event.type if event else self._wire_type(message))
        logger.error(
            "consumer %s: dead-lettered event=%s type=%s correlation=%s attempts=%s reason=%s",
            self.service.name,
            event.id if event else message.properties.get("message_id"),
            event.type if event else message.headers.get("ce-type"),
            event.correlation_id if event else message.headers.get("ce-correlationid"),
            attempts,
            reason,
        )
        return Decision.ACK

    def _requeue(self, event: ReceivedEvent | None, why: str) -> Decision:
        self._count("requeued", event.type if event else metrics.INVALID_TYPE)
        logger.error("consumer %s: %s; requeueing %s", self.service.name, why, event and event.id)
        time.sleep(REQUEUE_PAUSE_SECONDS)
        return Decision.REQUEUE

    def _count(self, outcome: str, event_type: str) -> None:
        """One delivery's outcome: in ``stats`` and in the Prometheus counter."""
        self.stats[outcome] += 1
        label = _METRIC_OUTCOMES.get(outcome, outcome)
        metrics.CONSUMER_EVENTS.labels(self.service.name, event_type, label).inc()

    def _observe_handling(self, event: ReceivedEvent, started: float) -> None:
        elapsed = time.perf_counter() - started
        metrics.CONSUMER_HANDLING_SECONDS.labels(self.service.name, event.type).observe(elapsed)

    def _wire_type(self, message: Message) -> str:
        """The delivery's ``ce-type`` as a metric label, if the service handles that type.

        Anything else (no envelope, a type nobody declared) is counted as ``invalid``: a label
        value per garbage type would let a stray publisher grow the metrics without bound.
        """
        wire_type = (message.headers or {}).get("ce-type")
        handled = {type_ for type_, _ in self.service.handled_types()}
        return wire_type if wire_type in handled else metrics.INVALID_TYPE

    def _log(self, level: int, what: str, event: ReceivedEvent, **kwargs: Any) -> None:
        exc_info = kwargs.pop("exc_info", None)
        logger.log(
            level,
            "consumer %s: %s event=%s type=%s v%s subject=%s seq=%s correlation=%s%s",
            self.service.name,
            what,
            event.id,
            event.type,
            event.version,
            event.subject,
            event.sequence,
            event.correlation_id,
            "".join(f" {key}={value}" for key, value in kwargs.items()),
            # A traceback for the unexpected only; RetryLater is business as usual.
            exc_info=exc_info if level >= logging.WARNING else None,
        )


def _connection_lost(using: str, before: Any) -> bool:
    """Whether the connection the failed transaction ran on (``before``) is gone.

    Django drops a connection whose rollback failed (and may already have opened a new one), so
    a different or missing connection means it died; the same one is probed. A transaction that
    had to open its connection itself did not fail on a stale one (the database may simply be
    down), and a caller's open transaction is never touched.
    """
    wrapper = connections[using]
    if before is None or wrapper.in_atomic_block:
        return False
    return wrapper.connection is not before or not wrapper.is_usable()


def _close_stale_connections() -> None:
    """``close_old_connections`` unless a caller owns an open transaction (tests, nested use).

    Closing inside an atomic block would break the caller's transaction; a worker never has one.
    """
    if not any(conn.in_atomic_block for conn in connections.all(initialized_only=True)):
        close_old_connections()


def _retry_count(headers: dict[str, Any]) -> int:
    try:
        return max(0, int(headers.get(RETRY_COUNT_HEADER) or 0))
    except (TypeError, ValueError):
        return 0


def _origin(message: Message) -> dict[str, Any]:
    """Where the event was first published (kept across retries for a later requeue/replay)."""
    headers, info = message.headers, message.delivery_info
    return {
        "x-original-exchange": headers.get("x-original-exchange", info.get("exchange", "")),
        "x-original-routing-key": headers.get(
            "x-original-routing-key", info.get("routing_key", "")
        ),
    }


def _copy(
    message: Message, headers: dict[str, Any], *, expiration: str | None = None
) -> amqp.Message:
    """A persistent copy of the delivery with new headers (and an expiration for retries)."""
    properties = {
        key: value
        for key, value in message.properties.items()
        if key not in {"application_headers", "expiration", "delivery_mode"}
    }
    if expiration is not None:
        properties["expiration"] = expiration
    return amqp.Message(message.body, application_headers=headers, delivery_mode=2, **properties)
