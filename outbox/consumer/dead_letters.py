"""Dead letters: move them from ``<service>.dead`` into a table, then requeue or discard them.

Why a table: messages in a queue cannot be listed, searched or annotated, and an operator's
decision (who discarded what, and why) must outlive the message. So the broker queue is only a
hand-over point: :func:`collect` *moves* messages into :class:`DeadLetter` rows — insert, commit,
then ack, so a crash in between leaves the message in the queue and the next run's insert is a
no-op (see the model's unique constraints). A message's content never stops a collection: what
PostgreSQL would refuse is made storable, or the row is stored reduced
(:mod:`outbox.consumer.dead_letter_rows`), one row at a time, and one service's failure does not
stop the others (:func:`collect_services`). Everything else works on the rows:

* :func:`requeue` republishes the original message (same ``message_id``, body and envelope
  headers; retry and death bookkeeping removed, so it gets the full retry budget again) to
  ``<service>.events`` through the default exchange — only that service sees it — with a
  publisher confirm, and only then marks the row ``requeued``. A crash between the two leaves the
  row open and the event in the queue: requeueing it again is harmless, the inbox drops the copy.
* :func:`discard` marks rows ``discarded`` with who, why and when; the message is already gone
  from the broker, so the event is never processed.

Two kinds of dead copies are understood: the consumer's own (``x-death-reason``,
``x-attempts``, ``x-dead-at``), and the broker's (``x-death``/``x-first-death-reason``, e.g.
``delivery_limit`` when a worker died on the message again and again).
"""

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import amqp
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    router,
    transaction,
)
from django.utils import timezone

from outbox.broker import CONNECTION_ERRORS, close_quietly, connect
from outbox.conf import get_settings
from outbox.consumer.conf import get_consumer_settings
from outbox.consumer.dead_letter_rows import (
    dead_letter_from_message,
    describe_error,
    is_reduced,
    reduced_dead_letter,
)
from outbox.consumer.dispatcher import RETRY_COUNT_HEADER
from outbox.consumer.models import DeadLetter
from outbox.consumer.publishing import ConfirmedPublisher, CopyNotPublished
from outbox.consumer.service import ConsumerService, get_service
from outbox.exceptions import OutboxError
from outbox.retention import get_retention

logger = logging.getLogger(__name__)

State = DeadLetter.State
# Headers describing a death or a retry: dropped when a dead letter is requeued, so the event
# starts afresh (retry count 0, no stale reason) and a later death is told apart from this one.
BOOKKEEPING_HEADERS = (
    "x-death",
    "x-first-death-",
    "x-last-death-",
    "x-death-reason",
    "x-attempts",
    "x-dead-service",
    "x-dead-at",
    "x-delivery-count",
    RETRY_COUNT_HEADER,
    "x-last-error",
)
# Set on a requeued message: which dead letter it came from (and so, a later death of the same
# event is a different message, with a different fingerprint).
REQUEUED_FROM_HEADER = "x-requeued-from"
REQUEUED_AT_HEADER = "x-requeued-at"
UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE
# AMQP properties carried over on requeue (never expiration, user_id or a stale delivery mode).
REQUEUE_PROPERTIES = (
    "content_type",
    "content_encoding",
    "message_id",
    "correlation_id",
    "type",
    "app_id",
    "timestamp",
    "priority",
    "reply_to",
)


class Outcome(enum.Enum):
    """What became of one message taken from ``<service>.dead``."""

    STORED = "stored"
    REDUCED = "reduced"  # stored as dead_letter_rows.reduced_dead_letter: refused as it was
    DUPLICATE = "duplicate"  # this copy, or an open row of the same event, is already stored
    LEFT = "left"  # not storable even reduced: not acknowledged, so it stays in the queue

    @property
    def kept(self) -> bool:
        """True when the message is in the table and may be acknowledged."""
        return self is not Outcome.LEFT


@dataclass
class CollectResult:
    """What one :func:`collect` run did for one service."""

    service: str
    taken: int = 0  # messages taken from the queue and acknowledged
    stored: int = 0  # new rows (reduced ones included)
    duplicates: int = 0  # copies already stored (a redelivery, or a second copy of one failure)
    reduced: int = 0  # new rows stored in reduced form (dead_letter_rows.reduced_dead_letter)
    left: int = 0  # messages that could not be stored at all, left in the queue
    left_error: str = ""  # why the first of them could not be stored
    error: str = ""  # why the run stopped before the queue was empty (broker, database)

    def count(self, outcomes: list[Outcome], left_error: str) -> None:
        """Add one batch's outcomes."""
        self.taken += sum(outcome.kept for outcome in outcomes)
        self.stored += sum(outcome in (Outcome.STORED, Outcome.REDUCED) for outcome in outcomes)
        self.reduced += outcomes.count(Outcome.REDUCED)
        self.duplicates += outcomes.count(Outcome.DUPLICATE)
        self.left += outcomes.count(Outcome.LEFT)
        self.left_error = self.left_error or left_error

    @property
    def problem(self) -> str:
        """What an operator must look at ("" when every message found was moved)."""
        problems = [self.error] if self.error else []
        if self.left:
            problems.append(
                f"{self.left} message(s) could not be stored, even reduced, and stay in the "
                f"queue: {self.left_error}"
            )
        return "; ".join(problems)


@dataclass
class ResolveResult:
    """What :func:`requeue` or :func:`discard` did."""

    done: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)  # row id -> why it was left alone


def _database() -> str:
    return router.db_for_write(DeadLetter) or "default"


# --- collecting ------------------------------------------------------------------------------


def collect_services(
    services: Iterable[ConsumerService], *, limit: int | None = None
) -> list[CollectResult]:
    """:func:`collect` each service in turn, whatever happens to the ones before it.

    A service whose collection fails, even with an exception nobody foresaw, is logged with its
    traceback and reported in its result (``error``); the next service is collected all the same:
    one service's trouble must not leave every other service's dead letters in the broker.
    """
    results = []
    for service in services:
        try:
            results.append(collect(service, limit=limit))
        except Exception as exc:
            logger.exception("dead letters %s: collection failed", service.name)
            error = f"collection failed: {describe_error(exc)}"
            results.append(CollectResult(service=service.name, error=error))
    return results


def collect(
    service: ConsumerService, *, limit: int | None = None, batch_size: int = 100
) -> CollectResult:
    """Move up to ``limit`` messages (all, by default) from ``<service>.dead`` into the table.

    Batches of ``batch_size``: take them (unacknowledged), insert the rows in one transaction,
    commit, then acknowledge each message that is now in the table. Nothing is acknowledged
    before it is committed. A message PostgreSQL refuses is stored in reduced form; one that
    cannot be stored even so is never acknowledged (it goes back to the queue when the connection
    closes) and does not stop the messages behind it.
    """
    result = CollectResult(service=service.name)
    settings = get_settings()
    connection = None
    try:
        connection = connect(settings.broker_url, connect_timeout=settings.connect_timeout)
        channel = connection.channel()
        channel.auto_decode = False  # the body's bytes as received, whatever content_encoding says
        while limit is None or result.taken + result.left < limit:
            done = result.taken + result.left
            size = batch_size if limit is None else min(batch_size, limit - done)
            batch = _take(channel, service.dead_letter_queue, size)
            if not batch:
                break
            outcomes, left_error = _store(service, batch)
            # One by one, never ``multiple``: that would also acknowledge a message left
            # unacknowledged in an earlier batch. Dead letters are few; the frames are cheap.
            for message, outcome in zip(batch, outcomes, strict=True):
                if outcome.kept:
                    channel.basic_ack(message.delivery_tag)
            result.count(outcomes, left_error)
    except amqp.exceptions.NotFound:
        result.error = (
            f"queue {service.dead_letter_queue!r} does not exist: run `manage.py setup_broker`"
        )
    except CONNECTION_ERRORS as exc:
        result.error = f"broker unreachable: {exc}"
    except DatabaseError as exc:  # the batch rolled back and was not acknowledged
        result.error = f"database error: {describe_error(exc)}"
    finally:
        close_quietly(connection)
    _log(result)
    return result


def _log(result: CollectResult) -> None:
    if not (result.taken or result.problem):
        return
    log = logger.error if result.problem else logger.warning
    log(
        "dead letters %s: collected %d (%d new, %d of them reduced, %d already stored)%s",
        result.service,
        result.taken,
        result.stored,
        result.reduced,
        result.duplicates,
        f"; {result.problem}" if result.problem else "",
    )


def _take(channel: amqp.Channel, queue: str, count: int) -> list[amqp.Message]:
    batch: list[amqp.Message] = []
    while len(batch) < count:
        message = channel.basic_get(queue, no_ack=False)
        if message is None:
            break
        batch.append(message)
    return batch


def _store(service: ConsumerService, batch: list[amqp.Message]) -> tuple[list[Outcome], str]:
    """Insert one row per message in one transaction; each message's outcome, and why the first
    message that could not be stored at all was refused.

    Each insert has its own savepoint, so a row PostgreSQL refuses fails alone: it is stored
    reduced instead, and if even that is refused the others are still committed.
    """
    using = _database()
    outcomes: list[Outcome] = []
    left_error = ""
    with transaction.atomic(using=using):
        for message in batch:
            try:
                outcomes.append(_store_one(service, message, using))
            except _Unstorable as exc:
                outcomes.append(Outcome.LEFT)
                left_error = left_error or str(exc)
    return outcomes, left_error


class _Unstorable(Exception):
    """Not even the reduced row of a message could be stored."""


# The connection itself failed: no other row can be stored either, so the batch fails and
# nothing of it is acknowledged (collect reports a database error).
_CONNECTION_LOST = (OperationalError, InterfaceError)


def _store_one(service: ConsumerService, message: amqp.Message, using: str) -> Outcome:
    full = None
    try:
        full = dead_letter_from_message(service, message)
        return _insert(full, using)
    except _CONNECTION_LOST:
        raise
    except Exception as exc:  # whatever keeps this row out must not keep the others out
        refused = describe_error(exc)
    logger.error(
        "dead letters %s: message %s refused as received (%s): storing it reduced",
        service.name,
        message.properties.get("message_id"),
        refused,
    )
    try:
        outcome = _insert(reduced_dead_letter(service, message, error=refused, full=full), using)
    except _CONNECTION_LOST:
        raise
    except Exception as exc:
        logger.exception(
            "dead letters %s: message %s not storable even reduced: left in the queue",
            service.name,
            message.properties.get("message_id"),
        )
        raise _Unstorable(describe_error(exc)) from exc
    return Outcome.REDUCED if outcome is Outcome.STORED else outcome


def _insert(row: DeadLetter, using: str) -> Outcome:
    """Insert ``row`` in a savepoint: STORED, or DUPLICATE when a unique key already has it."""
    try:
        with transaction.atomic(using=using):
            row.save(using=using, force_insert=True)
    except IntegrityError as exc:
        # Only a unique key means "already stored"; any other violation is a refusal.
        if getattr(exc.__cause__, "sqlstate", None) != UNIQUE_VIOLATION:
            raise
        logger.info(
            "dead letters %s: event %s already stored (open), copy dropped",
            row.service,
            row.event_id,
        )
        return Outcome.DUPLICATE
    return Outcome.STORED


# --- requeue and discard ---------------------------------------------------------------------


def requeue_message(row: DeadLetter) -> amqp.Message:
    """The message a requeue publishes: the original, minus retry/death bookkeeping."""
    headers = {
        key: value for key, value in row.headers.items() if not key.startswith(BOOKKEEPING_HEADERS)
    }
    headers[REQUEUED_FROM_HEADER] = f"dead-letter:{row.pk}"
    headers[REQUEUED_AT_HEADER] = timezone.now().isoformat()
    properties = {
        name: row.properties[name]
        for name in REQUEUE_PROPERTIES
        if row.properties.get(name) is not None
    }
    if row.event_id is not None:
        properties["message_id"] = str(row.event_id)
    return amqp.Message(bytes(row.body), application_headers=headers, delivery_mode=2, **properties)


def too_old_to_requeue(row: DeadLetter, *, now: datetime | None = None) -> bool:
    """True when the inbox may have forgotten the event (it happened before the inbox window).

    A requeued event the service *had* handled (e.g. a dead copy left by a crash after the
    retry succeeded) is dropped by its inbox entry; past the inbox retention that entry may be
    pruned, and a requeue could apply the event twice. Requeueing it then needs ``force``.
    """
    if row.occurred_at is None:
        return False
    return row.occurred_at < (now or timezone.now()) - get_retention().inbox


def requeue(ids: Iterable[int], *, by: str, note: str = "", force: bool = False) -> ResolveResult:
    """Republish open dead letters to their service's queue and mark them requeued.

    One row at a time: lock it, check it is still open, publish with a confirm, mark it, commit.
    Two operators requeueing the same row publish it once; a publish that fails leaves the row
    open (``skipped`` says why) and stops nothing else.
    """
    result = ResolveResult()
    using = _database()
    publisher = ConfirmedPublisher(confirm_timeout=get_consumer_settings().publish_timeout)
    try:
        for pk in sorted(set(ids)):
            with transaction.atomic(using=using):
                row = DeadLetter.objects.using(using).select_for_update().filter(pk=pk).first()
                why = _cannot_requeue(row, force=force)
                if why:
                    result.skipped[pk] = why
                    continue
                assert row is not None
                queue = get_service(row.service).queue_name
                try:
                    publisher.publish(requeue_message(row), exchange="", routing_key=queue)
                except CopyNotPublished as exc:
                    result.skipped[pk] = f"not published: {exc}"
                    continue
                except Exception as exc:  # a stored value the client cannot send: this row only
                    logger.exception("dead letters %s: #%s cannot be requeued", row.service, pk)
                    publisher.close()  # the channel may be half-way through a frame
                    result.skipped[pk] = (
                        f"not published, the stored message cannot be sent as it is "
                        f"({type(exc).__name__}: {exc}): discard it"
                    )
                    continue
                _resolve(row, State.REQUEUED, by=by, note=note, using=using)
            result.done.append(pk)
            logger.warning(
                "dead letters %s: requeued event=%s type=%s to %s by %s",
                row.service,
                row.event_id,
                row.event_type,
                queue,
                by,
            )
    finally:
        publisher.close()
    return result


def _cannot_requeue(row: DeadLetter | None, *, force: bool) -> str:
    if row is None:
        return "no such dead letter"
    if row.state != State.OPEN:
        return f"already {row.state}"
    if is_reduced(row):
        return (
            "stored in reduced form (PostgreSQL refused it as received): its headers are kept "
            "as text only, so the original message cannot be rebuilt; discard it, or publish it "
            "again by hand from its body and headers"
        )
    try:
        get_service(row.service)
    except OutboxError as exc:
        return str(exc)
    if not force and too_old_to_requeue(row):
        return (
            "the event is older than the inbox retention: its inbox entry may be pruned, so a "
            "requeue could apply it twice (requeue with --force if it was never handled)"
        )
    return ""


def discard(ids: Iterable[int], *, by: str, reason: str) -> ResolveResult:
    """Mark open dead letters discarded, recording who, why and when. ``reason`` is required."""
    if not reason.strip():
        raise OutboxError("a reason is required to discard dead letters")
    result = ResolveResult()
    using = _database()
    with transaction.atomic(using=using):
        rows = {
            row.pk: row
            for row in DeadLetter.objects.using(using).select_for_update().filter(pk__in=ids)
        }
        for pk in sorted(set(ids)):
            row = rows.get(pk)
            if row is None:
                result.skipped[pk] = "no such dead letter"
            elif row.state != State.OPEN:
                result.skipped[pk] = f"already {row.state}"
            else:
                _resolve(row, State.DISCARDED, by=by, note=reason.strip(), using=using)
                result.done.append(pk)
                logger.warning(
                    "dead letters %s: discarded event=%s type=%s by %s: %s",
                    row.service,
                    row.event_id,
                    row.event_type,
                    by,
                    reason,
                )
    return result


def _resolve(row: DeadLetter, state: str, *, by: str, note: str, using: str) -> None:
    row.state = state
    row.resolved_at = timezone.now()
    row.resolved_by = by[:150]
    row.resolution_note = note
    row.save(using=using, update_fields=["state", "resolved_at", "resolved_by", "resolution_note"])
