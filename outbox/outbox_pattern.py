"""What django-outbox-pattern writes and sends, read without importing the package.

django-outbox-pattern (the package a shop may be migrating from, docs/migrating-from-django-
outbox-pattern.md) is never imported by the shop: its table is read with SQL and its messages
are parsed from their headers. Everything this module assumes about it is written down here,
checked against version 3.2.1 (``django_outbox_pattern/{models,choices,headers,producers}.py``):

* Table ``published`` (model ``Published``): ``id`` uuid primary key, ``version`` varchar (null),
  ``destination`` varchar(255), ``body`` jsonb, ``added`` timestamptz, ``expires_at``
  timestamptz (default: one day after ``added``), ``retry`` integer, ``status`` integer,
  ``headers`` jsonb (added in its migration 0005: older rows have ``{}``).
* ``status`` (``StatusChoice``): ``-1`` FAILED (its 50 send attempts ran out; ``expires_at`` is
  then pushed 15 days ahead), ``1`` SCHEDULE, ``2`` SUCCEEDED. Its publisher sends only rows with
  ``status = 1 AND expires_at >= now()`` and re-checks ``status == 1`` under its row lock, so an
  expired row is never sent, and a row given any other status is never sent either.
* When a row is saved with a ``version``, ``.<version>`` is appended to its destination.
* Headers (``generate_headers``): ``dop-msg-id`` (the row id), ``dop-msg-destination``,
  ``dop-msg-type`` (the model's class name, not an event type), ``dop-msg-sent-time`` (when the
  row was saved, ISO 8601), ``dop-correlation-id`` (the request id, else a fresh uuid4). It sends
  over STOMP: RabbitMQ turns a ``SEND`` to ``/exchange/<exchange>/<routing key>`` into an AMQP
  message on that exchange with that routing key, the STOMP headers (plus ``content-length``) as
  application headers, the JSON text as the body, **no** content type, no ``message_id`` and
  delivery mode 1 (it sets no ``persistent`` header).

The mapping to our events: the routing key names the event type, looked up in the registry; a
routing key ``<type>.v<N>`` (what its ``version="vN"`` produces) names version N, a bare
``<type>`` the lowest registered version of that type (the contract a producer that never
versioned its events was written against). The destination's exchange is not trusted: the
registry says where a type is published. Django-outbox-pattern keeps no order, so each of its
events is an aggregate of its own: subject = the event id, sequence 1 (no ordering claim).
"""

import re
import uuid
from dataclasses import dataclass
from typing import Any

from outbox.exceptions import OutboxError
from outbox.models import MAX_ID_LENGTH
from outbox.registry import EventType, all_event_types

TABLE = "published"
COLUMNS = ("id", "version", "destination", "body", "added", "expires_at", "status", "headers")
STATUS_FAILED = -1
STATUS_SCHEDULE = 1
STATUS_SUCCEEDED = 2
# Ours, not the package's: "moved to the transactional outbox by import_outbox_pattern". Any
# status but SCHEDULE keeps its publisher away; a value of our own tells moved rows from sent
# ones (its admin shows it as "-").
STATUS_MOVED = 3

MSG_ID_HEADER = "dop-msg-id"
DESTINATION_HEADER = "dop-msg-destination"
CORRELATION_HEADER = "dop-correlation-id"
SENT_TIME_HEADER = "dop-msg-sent-time"
HEADER_PREFIX = "dop-"

# Where events of django-outbox-pattern come from when the registry names no `source`.
SOURCE = "django-outbox-pattern"

_EXCHANGE_DESTINATION = re.compile(r"^/exchange/(?P<exchange>[^/]+)/(?P<routing_key>.+)$")
_VERSION_SUFFIX = re.compile(r"^(?P<type>.+)\.v(?P<version>[1-9][0-9]*)$")


class Unmappable(OutboxError):
    """A django-outbox-pattern row or message that cannot become one of our events (why: str)."""


@dataclass(frozen=True)
class Destination:
    """A STOMP destination ``/exchange/<exchange>/<routing key>`` split in its parts."""

    exchange: str
    routing_key: str


def parse_destination(destination: str) -> Destination:
    """Split an ``/exchange/...`` destination; other STOMP destinations are :class:`Unmappable`.

    ``/queue/``, ``/topic/`` and ``/amq/queue/`` destinations bypass the topic exchanges our
    consumers are bound to, so there is no event type to read from them.
    """
    match = _EXCHANGE_DESTINATION.match(destination or "")
    if match is None:
        raise Unmappable(f"destination {destination!r} is not /exchange/<exchange>/<routing key>")
    return Destination(match["exchange"], match["routing_key"])


def event_type_for(routing_key: str) -> EventType:
    """The registered event type a routing key names (see the module docstring for the rule)."""
    by_type: dict[str, list[EventType]] = {}
    for event_type in all_event_types():
        by_type.setdefault(event_type.type, []).append(event_type)
    if routing_key in by_type:
        return by_type[routing_key][0]  # all_event_types() is sorted: the lowest version
    suffixed = _VERSION_SUFFIX.match(routing_key)
    if suffixed and suffixed["type"] in by_type:
        version = int(suffixed["version"])
        for event_type in by_type[suffixed["type"]]:
            if event_type.version == version:
                return event_type
        raise Unmappable(f"{suffixed['type']} has no registered version {version}")
    raise Unmappable(f"routing key {routing_key!r} is not a registered event type")


def message_id(headers: dict[str, Any], fallback: Any = None) -> uuid.UUID:
    """The event id: the ``dop-msg-id`` header, which must be a UUID.

    ``fallback`` (the row id) is used only when the header is absent — rows written before the
    package had headers; its publisher sends those with the same id.
    """
    value = headers.get(MSG_ID_HEADER)
    if value is None or (isinstance(value, str) and not value.strip()):
        if fallback is None:
            raise Unmappable(f"no {MSG_ID_HEADER} header: nothing to deduplicate it by")
        value = fallback
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Unmappable(f"{MSG_ID_HEADER} {value!r} is not a UUID") from None


def correlation_id(headers: dict[str, Any], event_id: uuid.UUID) -> str:
    """Its correlation header, else the event's own id (how our sagas start).

    A header longer than our envelope allows (``MAX_ID_LENGTH``; it takes any length) is not
    kept either: the event then starts a correlation of its own instead of failing to import.
    """
    value = headers.get(CORRELATION_HEADER)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    text = str(value).strip() if value is not None else ""
    return text if text and len(text) <= MAX_ID_LENGTH else str(event_id)


def is_outbox_pattern_message(properties: dict[str, Any]) -> bool:
    """A delivery django-outbox-pattern sent: no content type and ``dop-*`` headers.

    Our relay always sets ``application/json`` (also on the events it imported, which keep their
    ``dop-*`` headers), so those are read as ours.
    """
    headers = properties.get("application_headers") or {}
    return not properties.get("content_type") and any(
        str(key).startswith(HEADER_PREFIX) for key in headers
    )
