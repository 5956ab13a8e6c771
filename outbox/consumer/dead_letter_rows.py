"""A message of ``<service>.dead`` as a :class:`DeadLetter` row that PostgreSQL can store.

Collecting must never fail on a message's content: a message PostgreSQL refuses would stay at the
head of ``<service>.dead`` and block the collection of everything behind it, run after run. Dead
copies are, by definition, the messages nobody vouches for (hand-published, altered, forged), so
every value is made storable on the way in:

* text anywhere: NUL characters and lone surrogates become U+FFFD (PostgreSQL text and jsonb
  refuse both; py-amqp decodes strings with ``surrogatepass``, so a header can carry one);
* headers and properties: non-finite floats (an AMQP double can be NaN or ±Infinity, JSON cannot)
  become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; datetimes and bytes become text;
* the payload is the body read as *standard* JSON: a body with ``NaN``/``Infinity`` is not JSON
  (payload None; the raw body is kept as it is), a number too large for a double keeps its text;
* ``version`` and ``attempts`` are ``integer`` columns: a version outside 0..2**31-1 is stored as
  unknown (NULL), attempts beyond it are clamped; the headers keep the values as received.

A row PostgreSQL refuses all the same (a value nobody foresaw) is stored by the caller as
:func:`reduced_dead_letter`: raw body, headers and properties as text, and a reason saying what
could not be stored. Such a row is never requeued (:func:`is_reduced`).
"""

import hashlib
import json
import math
import re
import uuid
from datetime import UTC, date, datetime
from typing import Any

import amqp
from django.utils import timezone

from outbox.consumer.dispatcher import RETRY_COUNT_HEADER
from outbox.consumer.models import DeadLetter
from outbox.consumer.service import ConsumerService

# PositiveIntegerField is PostgreSQL's ``integer`` with a CHECK (>= 0).
INTEGER_MAX = 2**31 - 1
REDUCED_REASON = "not storable as received"
BROKER_REASONS = {
    "delivery_limit": "delivered more than {limit} times without an acknowledgement "
    "(x-delivery-limit): the worker crashed, was killed or hung on it every time",
    "rejected": "rejected by a consumer without requeue",
    "expired": "expired (message or queue TTL) before it was consumed",
    "maxlen": "dropped because the queue was full (max length)",
}
_UNSTORABLE_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


def dead_letter_from_message(service: ConsumerService, message: amqp.Message) -> DeadLetter:
    """Read a message from ``<service>.dead`` into an unsaved :class:`DeadLetter`."""
    properties = dict(message.properties)
    headers = json_safe(properties.pop("application_headers", None) or {})
    properties = json_safe(properties)
    body = message_body(message)
    retries = _count(headers.get(RETRY_COUNT_HEADER), 0)
    if headers.get("x-death-reason") is not None:
        origin = DeadLetter.Origin.CONSUMER
        reason = str(headers["x-death-reason"])
        attempts = _count(headers.get("x-attempts"), retries + 1)
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
        version=_version(headers.get("ce-dataversion")),
        source=str(headers.get("ce-source") or "")[:200],
        subject=str(headers.get("ce-subject") or "")[:200],
        correlation_id=str(headers.get("ce-correlationid") or "")[:100],
        occurred_at=_time(headers.get("ce-time"), default=None),
        origin=origin,
        reason=reason,
        attempts=_count(attempts, 0),
        headers=headers,
        properties=properties,
        body=body,
        payload=json_safe(_json_or_none(body)),
        fingerprint=_fingerprint(body, headers, properties),
        dead_at=dead_at,
    )


def reduced_dead_letter(
    service: ConsumerService,
    message: amqp.Message,
    *,
    error: str,
    full: DeadLetter | None = None,
) -> DeadLetter:
    """The row to store when ``full`` (the row read from ``message``; None if reading it failed)
    was refused, ``error`` (:func:`describe_error`) saying why: only values this function
    controls, the rest as text.

    The fingerprint is the full row's (or a hash of the message's text), so a second collection
    of the same copy (a crash before the ack) is still a duplicate and not a second row.
    """
    properties = dict(message.properties)
    headers = properties.pop("application_headers", None) or {}
    body = message_body(message)
    reason = f"{REDUCED_REASON} ({error}); its headers and properties are kept as text"
    if full is not None and full.reason:
        reason = f"{reason}; the reason it was dead-lettered: {full.reason}"
    origin = DeadLetter.Origin.CONSUMER if "x-death-reason" in headers else DeadLetter.Origin.BROKER
    text_headers, text_properties = ascii(headers), ascii(properties)
    return DeadLetter(
        service=service.name,
        event_id=full.event_id if full is not None else None,
        event_type=full.event_type if full is not None else "",
        origin=full.origin if full is not None else origin,
        reason=reason,
        attempts=full.attempts if full is not None else 0,
        # A JSON string, not an object: what requeue and the admin tell reduced rows by.
        headers=text_headers,
        properties=text_properties,
        body=body,
        payload=None,
        fingerprint=(
            full.fingerprint
            if full is not None
            else _fingerprint(body, text_headers, text_properties)
        ),
        dead_at=full.dead_at if full is not None else timezone.now(),
    )


def describe_error(exc: BaseException) -> str:
    """``Type: first line``, storable as text. PostgreSQL's messages run over several lines,
    quoting the statement and the refused value."""
    lines = str(exc).splitlines()
    return clean_text(f"{type(exc).__name__}: {lines[0] if lines else ''}")[:300]


def is_reduced(row: DeadLetter) -> bool:
    """True for a row stored by :func:`reduced_dead_letter` (headers as text, not a mapping)."""
    return not isinstance(row.headers, dict)


def message_body(message: amqp.Message) -> bytes:
    """The body as bytes (py-amqp hands a str for a text content encoding)."""
    body = message.body
    return body.encode(errors="surrogatepass") if isinstance(body, str) else bytes(body)


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


def _fingerprint(body: bytes, headers: Any, properties: Any) -> str:
    digest = hashlib.sha256(body)
    digest.update(json.dumps([headers, properties], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def json_safe(value: Any) -> Any:
    """AMQP header/property values (or a decoded body) as JSON PostgreSQL stores: datetimes and
    bytes as text, non-finite floats as their names, no NUL or lone surrogate in any text."""
    if isinstance(value, dict):
        return {clean_text(str(key)): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no token for these and PostgreSQL's json refuses Python's ``NaN``.
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return clean_text(bytes(value).decode(errors="replace"))
    return clean_text(str(value))  # Decimal and anything else


def clean_text(text: str) -> str:
    """``text`` without what PostgreSQL text and jsonb refuse: NUL and lone surrogates."""
    return _UNSTORABLE_CHARACTERS.sub("\ufffd", text)


def _json_or_none(body: bytes) -> Any:
    """The body as standard JSON, or None. Python's json accepts ``NaN`` and ``Infinity`` (not
    JSON, refused by PostgreSQL): such a body has no payload; its raw bytes are kept."""
    try:
        return json.loads(body, parse_constant=_refuse_constant, parse_float=_float_or_text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _float_or_text(text: str) -> float | str:
    # 1e400 is valid JSON but no double: keep the producer's text rather than store Infinity.
    number = float(text)
    return number if math.isfinite(number) else text


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _integer(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        return None


def _count(value: Any, default: int) -> int:
    """A count for an ``integer`` column: clamped to 0..INTEGER_MAX (the header keeps the rest)."""
    number = _integer(value)
    return default if number is None else min(max(0, number), INTEGER_MAX)


def _version(value: Any) -> int | None:
    """The schema version, or None (unknown) when it does not fit the column."""
    number = _integer(value)
    return number if number is not None and 0 <= number <= INTEGER_MAX else None


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
    if moment is not None:
        try:
            # In UTC, within Python's range: PostgreSQL would store 9999-12-31 23:00-14:00, but
            # no one could read the row back.
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
        except OverflowError:
            pass
    return timezone.now() if default is _NOW else default
