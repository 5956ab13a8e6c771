"""Dead letters: move them from ``<service>.dead`` into a table, then requeue or discard them.

Why a table: messages in a queue cannot be listed, searched or annotated, and an operator's
decision (who discarded what, and why) must outlive the message. So the broker queue is only a
hand-over point: :func:`collect` *moves* messages into :class:`DeadLetter` rows — insert, commit,
then ack, so a crash in between leaves the message in the queue and the next run's insert is a
no-op (see the model's unique constraints). Everything else works on the rows:

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

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import amqp
from django.db import IntegrityError, router, transaction
from django.utils import timezone

from outbox.broker import CONNECTION_ERRORS, close_quietly, connect
from outbox.conf import get_settings
from outbox.consumer.conf import get_consumer_settings
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
BROKER_REASONS = {
    "delivery_limit": "delivered more than {limit} times without an acknowledgement "
    "(x-delivery-limit): the worker crashed, was killed or hung on it every time",
    "rejected": "rejected by a consumer without requeue",
    "expired": "expired (message or queue TTL) before it was consumed",
    "maxlen": "dropped because the queue was full (max length)",
}


@dataclass
class CollectResult:
    """What one :func:`collect` run did for one service."""

    service: str
    taken: int = 0  # messages taken from the queue and acknowledged
    stored: int = 0  # new rows
    duplicates: int = 0  # copies already stored (a redelivery, or a second copy of one failure)
    error: str = ""


@dataclass
class ResolveResult:
    """What :func:`requeue` or :func:`discard` did."""

    done: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)  # row id -> why it was left alone


def _database() -> str:
    return router.db_for_write(DeadLetter) or "default"


# --- collecting ------------------------------------------------------------------------------


def collect(
    service: ConsumerService, *, limit: int | None = None, batch_size: int = 100
) -> CollectResult:
    """Move up to ``limit`` messages (all, by default) from ``<service>.dead`` into the table.

    Batches of ``batch_size``: take them (unacknowledged), insert the rows in one transaction,
    commit, then acknowledge the batch. Nothing is acknowledged before it is committed.
    """
    result = CollectResult(service=service.name)
    settings = get_settings()
    connection = None
    try:
        connection = connect(settings.broker_url, connect_timeout=settings.connect_timeout)
        channel = connection.channel()
        while limit is None or result.taken < limit:
            size = batch_size if limit is None else min(batch_size, limit - result.taken)
            batch = _take(channel, service.dead_letter_queue, size)
            if not batch:
                break
            stored = _store(service, batch)
            channel.basic_ack(batch[-1].delivery_tag, multiple=True)
            result.taken += len(batch)
            result.stored += stored
            result.duplicates += len(batch) - stored
    except amqp.exceptions.NotFound:
        result.error = (
            f"queue {service.dead_letter_queue!r} does not exist: run `manage.py setup_broker`"
        )
    except CONNECTION_ERRORS as exc:
        result.error = f"broker unreachable: {exc}"
    finally:
        close_quietly(connection)
    if result.taken or result.error:
        log = logger.error if result.error else logger.warning
        log(
            "dead letters %s: collected %d (%d new, %d already stored)%s",
            service.name,
            result.taken,
            result.stored,
            result.duplicates,
            f"; {result.error}" if result.error else "",
        )
    return result


def _take(channel: amqp.Channel, queue: str, count: int) -> list[amqp.Message]:
    batch: list[amqp.Message] = []
    while len(batch) < count:
        message = channel.basic_get(queue, no_ack=False)
        if message is None:
            break
        batch.append(message)
    return batch


def _store(service: ConsumerService, batch: list[amqp.Message]) -> int:
    """Insert one row per message (duplicates skipped); return how many rows are new."""
    using = _database()
    stored = 0
    with transaction.atomic(using=using):
        for message in batch:
            row = dead_letter_from_message(service, message)
            try:
                with transaction.atomic(using=using):
                    row.save(using=using, force_insert=True)
            except IntegrityError:
                logger.info(
                    "dead letters %s: event %s already stored (open), copy dropped",
                    service.name,
                    row.event_id,
                )
            else:
                stored += 1
    return stored


def dead_letter_from_message(service: ConsumerService, message: amqp.Message) -> DeadLetter:
    """Read a message from ``<service>.dead`` into an unsaved :class:`DeadLetter`."""
    properties = dict(message.properties)
    # JSON-safe and NUL-free from here on: PostgreSQL text and jsonb refuse NUL characters, and
    # one unstorable message must not block its queue's collection forever.
    headers = json_safe(properties.pop("application_headers", None) or {})
    properties = json_safe(properties)
    body = message.body.encode() if isinstance(message.body, str) else bytes(message.body)
    retries = _int(headers.get(RETRY_COUNT_HEADER), 0)
    if headers.get("x-death-reason") is not None:
        origin = DeadLetter.Origin.CONSUMER
        reason = str(headers["x-death-reason"])
        attempts = _int(headers.get("x-attempts"), retries + 1)
        dead_at = _time(headers.get("x-dead-at"))
    else:
        origin = DeadLetter.Origin.BROKER
        reason, attempts, dead_at = _broker_death(service, headers, retries)
    return DeadLetter(
        service=service.name,
        # django-outbox-pattern's messages carry their id in a header of their own.
        event_id=_uuid(
            headers.get("ce-id") or properties.get("message_id") or headers.get("dop-msg-id")
        ),
        event_type=str(headers.get("ce-type") or properties.get("type") or "")[:200],
        version=_int(headers.get("ce-dataversion"), None),
        source=str(headers.get("ce-source") or "")[:200],
        subject=str(headers.get("ce-subject") or "")[:200],
        correlation_id=str(headers.get("ce-correlationid") or "")[:100],
        occurred_at=_time(headers.get("ce-time"), default=None),
        origin=origin,
        reason=reason,
        attempts=attempts,
        headers=headers,
        properties=properties,
        body=body,
        payload=json_safe(_json_or_none(body)),
        fingerprint=_fingerprint(body, headers, properties),
        dead_at=dead_at,
    )


def _broker_death(
    service: ConsumerService, headers: dict[str, Any], retries: int
) -> tuple[str, int, datetime]:
    deaths = headers.get("x-death")
    first = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
    code = str(headers.get("x-first-death-reason") or first.get("reason") or "unknown")
    queue = str(headers.get("x-first-death-queue") or first.get("queue") or "?")
    text = BROKER_REASONS.get(code, "dead-lettered by the broker").format(
        limit=service.delivery_limit
    )
    reason = f"{code}: {text} (queue {queue})"
    # delivery_limit: the broker counted delivery_limit + 1 deliveries in this round
    deliveries = service.delivery_limit + 1 if code == "delivery_limit" else 1
    attempts = retries + deliveries
    return reason, attempts, _time(first.get("time"))


def _fingerprint(body: bytes, headers: dict, properties: dict) -> str:
    digest = hashlib.sha256(body)
    digest.update(json.dumps([headers, properties], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def json_safe(value: Any) -> Any:
    """AMQP header/property values as storable JSON: datetimes (x-death) and bytes as text, and
    no NUL characters (PostgreSQL refuses them in text and jsonb)."""
    if isinstance(value, dict):
        return {_no_nul(str(key)): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, str):
        return _no_nul(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return _no_nul(bytes(value).decode(errors="replace"))
    return _no_nul(str(value))  # Decimal and anything else


def _no_nul(text: str) -> str:
    return text.replace("\x00", "\ufffd")


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _int(value: Any, default: int | None) -> Any:
    try:
        return max(0, int(value)) if value is not None and not isinstance(value, bool) else default
    except (TypeError, ValueError):
        return default


_NOW = object()


def _time(value: Any, default: Any = _NOW) -> Any:
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
    if moment is None:
        return timezone.now() if default is _NOW else default
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
