"""How an outbox row looks on the wire: CloudEvents 1.0 in binary mode over AMQP 0-9-1.

The body is the JSON payload; the envelope travels in AMQP properties and ``ce-`` headers (the
convention of the CloudEvents SDK's RabbitMQ binding). See docs/events.md for the table.
"""

import json
import struct
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import amqp

from outbox.framing import (
    INT32_MAX,
    UnsupportedValue,
    encode_properties,
    field_value,
    header_name,
    property_flags,
)

if TYPE_CHECKING:
    from outbox.claiming import ClaimedRow
    from outbox.models import OutboxMessage

    Row = OutboxMessage | ClaimedRow

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
PERSISTENT = 2


def encode_body(message: "Row") -> bytes:
    """The message body: the payload as UTF-8 JSON.

    A claimed row carries the payload's stored text (a ``json`` column) and it is sent as it is
    (no decode and re-encode in the relay); a model instance is dumped compactly.
    """
    text = getattr(message, "payload_json", None)
    if text is not None:
        return text.encode()
    return json.dumps(message.payload, separators=(",", ":"), ensure_ascii=False).encode()


def envelope_headers(message: "Row") -> dict[str, str | int]:
    """The CloudEvents attributes as ``ce-`` headers, plus the row's extra headers."""
    headers: dict[str, str | int] = dict(message.headers or {})
    headers.update(
        {
            "ce-specversion": SPECVERSION,
            "ce-id": str(message.event_id),
            "ce-source": message.source,
            "ce-type": message.type,
            "ce-time": message.occurred_at.isoformat().replace("+00:00", "Z"),
            "ce-subject": message.aggregate_id,
            "ce-dataversion": message.schema_version,
            "ce-sequence": message.sequence,
            "ce-aggregatetype": message.aggregate_type,
            "ce-correlationid": message.correlation_id,
        }
    )
    if message.causation_id:
        headers["ce-causationid"] = message.causation_id
    if "traceparent" in headers:
        headers["ce-traceparent"] = headers["traceparent"]
    return headers


def amqp_properties(message: "Row", headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """The AMQP basic properties of an outbox row (``headers``: if already built)."""
    return {
        "content_type": CONTENT_TYPE,
        "delivery_mode": PERSISTENT,
        "message_id": str(message.event_id),
        "correlation_id": message.correlation_id,
        "type": message.type,
        "app_id": message.source,
        "timestamp": int(message.occurred_at.timestamp()),
        "application_headers": headers if headers is not None else envelope_headers(message),
    }


def to_amqp(
    message: "Row", body: bytes | None = None, headers: dict[str, Any] | None = None
) -> amqp.Message:
    """Build the persistent AMQP message for an outbox row (``headers``: if already built)."""
    return amqp.Message(
        body if body is not None else encode_body(message), **amqp_properties(message, headers)
    )


# The relay's hot path: encode_properties(amqp_properties(row)) without the two dicts and the
# walk over py-amqp's property layout, which cost a third of the relay's CPU per message. The
# header names, type tags and property flags are encoded once, here; only the row's values are
# encoded per row. This is a transcription of amqp_properties() and envelope_headers() above,
# not a second definition: change them together (outbox/tests/test_wire.py compares the two on
# many varied rows, byte for byte). Whatever it is not sure of, it leaves to the generic path.
_FLAGS = property_flags(
    "content_type",
    "application_headers",
    "delivery_mode",
    "correlation_id",
    "message_id",
    "timestamp",
    "type",
    "app_id",
)
# Property values follow in py-amqp's layout order: content_type, application_headers,
# delivery_mode, correlation_id, message_id, timestamp, type, app_id.
_HEAD = _FLAGS + bytes((len(CONTENT_TYPE),)) + CONTENT_TYPE.encode()
_PERSISTENT = bytes((PERSISTENT,))
# Header names with the type tag of their value: "S" (long string), "I" (32-bit int).
_SPECVERSION = header_name("ce-specversion") + field_value(SPECVERSION)
_ID = header_name("ce-id") + b"S"
_SOURCE = header_name("ce-source") + b"S"
_TYPE = header_name("ce-type") + b"S"
_TIME = header_name("ce-time") + b"S"
_SUBJECT = header_name("ce-subject") + b"S"
_DATAVERSION = header_name("ce-dataversion") + b"I"
_SEQUENCE = header_name("ce-sequence") + b"I"
_AGGREGATETYPE = header_name("ce-aggregatetype") + b"S"
_CORRELATIONID = header_name("ce-correlationid") + b"S"
_CAUSATIONID = header_name("ce-causationid") + b"S"
_TRACEPARENT = header_name("ce-traceparent")
_TRACEPARENT_STRING = _TRACEPARENT + b"S"
# A row's extra header of one of these names would be overwritten in place by envelope_headers()
# (a different header order): such rows take the generic path.
_ENVELOPE_NAMES = frozenset(
    {
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-time",
        "ce-subject",
        "ce-dataversion",
        "ce-sequence",
        "ce-aggregatetype",
        "ce-correlationid",
        "ce-causationid",
        "ce-traceparent",
    }
)
# Extra headers' names with the "S" tag, encoded once each (a handful of names; bounded).
_STRING_NAMES: dict[str, bytes] = {}
_LENGTH = struct.Struct(">I").pack  # of a table
# The length of a long string (after its "S"), looked up rather than packed: a longer value
# (IndexError) takes the generic path.
_STRING_LENGTH = [_LENGTH(n) for n in range(1024)]
_INT = struct.Struct(">i").pack  # after an "I"
_TIMESTAMP = struct.Struct(">Q").pack
_SHORT_LENGTH = [bytes((n,)) for n in range(256)]  # a shortstr's length octet; IndexError above


# Per minute rows occurred in, by (year, month, day, hour, minute): its "YYYY-MM-DDTHH:MM:" and
# its first second's timestamp. An aware datetime's isoformat() is slow, mostly for its UTC
# offset, and timestamp() goes through a timedelta and a float. Bounded (cleared when full).
_MINUTES: dict[tuple[int, int, int, int, int], tuple[bytes, int]] = {}
_MINUTES_MAX = 4096


def _time_fields(occurred_at: datetime) -> tuple[bytes, int]:
    """``ce-time`` and the ``timestamp`` property: exactly
    ``occurred_at.isoformat().replace("+00:00", "Z").encode()`` and
    ``int(occurred_at.timestamp())``, at half the cost for a UTC datetime (the usual case)."""
    if type(occurred_at) is datetime and occurred_at.tzinfo is UTC:
        minute = (
            occurred_at.year,
            occurred_at.month,
            occurred_at.day,
            occurred_at.hour,
            occurred_at.minute,
        )
        cached = _MINUTES.get(minute) or _cache_minute(occurred_at, minute)
        if cached is not None:
            prefix, start = cached
            second, micro = occurred_at.second, occurred_at.microsecond
            if micro:
                return b"%s%02d.%06dZ" % (prefix, second, micro), start + second
            return b"%s%02dZ" % (prefix, second), start + second  # isoformat(): no ".000000"
    return occurred_at.isoformat().replace("+00:00", "Z").encode(), int(occurred_at.timestamp())


def _cache_minute(
    occurred_at: datetime, minute: tuple[int, int, int, int, int]
) -> tuple[bytes, int] | None:
    """Cache a minute's text and timestamp; ``None`` for a minute ``_time_fields`` must not
    shortcut: before 1970 (a negative timestamp: py-amqp's error) or from 2500 on, where
    ``int(timestamp())`` of a float may round xx:59.999999 up to the next second (from 2**34 s)
    while the minute's start plus the second would not."""
    if not 1970 <= minute[0] < 2500:
        return None
    start = occurred_at.replace(second=0, microsecond=0)
    if len(_MINUTES) >= _MINUTES_MAX:
        _MINUTES.clear()
    cached = _MINUTES[minute] = (start.isoformat()[:17].encode(), int(start.timestamp()))
    return cached


# Per kind of event, by (source, type, aggregate type, schema version): the encoded pieces of
# its properties that only depend on those (three strings encoded, and a dozen pieces fewer to
# join per row). A handful of kinds; bounded (not cached beyond _KINDS_MAX).
_Kind = tuple[bytes, bytes, bytes, bytes]
_KINDS: dict[tuple[str, str, str, int], _Kind] = {}
_KINDS_MAX = 1024


def _kind(source: str, event_type: str, aggregate_type: str, version: int) -> _Kind:
    """The pieces ``encoded_properties`` takes from a row's kind: ``ce-source`` and ``ce-type``
    (with the ``ce-time`` name that follows), ``ce-dataversion`` (with the ``ce-sequence`` name
    that follows), ``ce-aggregatetype`` (with the ``ce-correlationid`` name that follows), and
    the ``type`` and ``app_id`` properties."""
    # Exactly int (a bool is an AMQP boolean, and True == 1 as a key), in the range of an "I".
    if not (type(version) is int and -INT32_MAX <= version <= INT32_MAX):
        raise UnsupportedValue(version)
    # Strict UTF-8, as in encoded_properties().
    source_data, type_data = source.encode(), event_type.encode()
    aggregate_data = aggregate_type.encode()
    kind = (
        b"".join(
            (
                _SOURCE,
                _STRING_LENGTH[len(source_data)],
                source_data,
                _TYPE,
                _STRING_LENGTH[len(type_data)],
                type_data,
                _TIME,
            )
        ),
        _DATAVERSION + _INT(version) + _SEQUENCE,
        _AGGREGATETYPE + _STRING_LENGTH[len(aggregate_data)] + aggregate_data + _CORRELATIONID,
        b"".join(
            (
                _SHORT_LENGTH[len(type_data)],
                type_data,
                _SHORT_LENGTH[len(source_data)],
                source_data,
            )
        ),
    )
    # Only exact str keys: a str subclass could encode differently.
    if (
        len(_KINDS) < _KINDS_MAX
        and type(source) is str
        and type(event_type) is str
        and type(aggregate_type) is str
    ):
        _KINDS[(source, event_type, aggregate_type, version)] = kind
    return kind


_SPECVERSION_ID = _SPECVERSION + _ID


def encoded_properties(message: "Row") -> bytes:
    """The AMQP basic properties of an outbox row as they go in its content header frame:
    exactly ``encode_properties(amqp_properties(message))``, several times cheaper.

    Raises what that raises (e.g. for a property over a shortstr's 255 bytes).
    """
    try:
        # Strict UTF-8 here: a lone surrogate raises and the generic path (surrogatepass)
        # encodes it; for every other string the bytes are the same.
        event_id = message.event_id
        event_id = (event_id if type(event_id) is str else str(event_id)).encode()
        subject = message.aggregate_id.encode()
        correlation_id = message.correlation_id.encode()
        time, timestamp = _time_fields(message.occurred_at)
        sequence = message.sequence
        # Exactly int (a bool is an AMQP boolean), and in the range py-amqp writes as "I".
        if not (type(sequence) is int and -INT32_MAX <= sequence <= INT32_MAX):
            raise UnsupportedValue(sequence)
        version = message.schema_version
        key = (message.source, message.type, message.aggregate_type, version)
        # type(version): True == 1 and hashes alike, but is encoded as a boolean.
        kind = _KINDS.get(key) if type(version) is int else None
        if kind is None:
            kind = _kind(*key)
        table: list[bytes] = []
        traceparent = None
        extra = message.headers
        if extra:
            if type(extra) is not dict or not extra.keys().isdisjoint(_ENVELOPE_NAMES):
                raise UnsupportedValue(extra)
            for name, value in extra.items():
                if type(value) is str:  # the usual case (signature, key id, traceparent)
                    data = value.encode()
                    encoded_name = _STRING_NAMES.get(name)
                    if encoded_name is None:
                        encoded_name = header_name(name) + b"S"
                        if len(_STRING_NAMES) < 1024:
                            _STRING_NAMES[name] = encoded_name
                    table += (encoded_name, _STRING_LENGTH[len(data)], data)
                    if name == "traceparent":
                        traceparent = data
                else:
                    table += (header_name(name), field_value(value))
        table += (
            _SPECVERSION_ID,
            _STRING_LENGTH[len(event_id)],
            event_id,
            kind[0],  # ce-source, ce-type, the ce-time name
            _STRING_LENGTH[len(time)],
            time,
            _SUBJECT,
            _STRING_LENGTH[len(subject)],
            subject,
            kind[1],  # ce-dataversion, the ce-sequence name
            _INT(sequence),
            kind[2],  # ce-aggregatetype, the ce-correlationid name
            _STRING_LENGTH[len(correlation_id)],
            correlation_id,
        )
        causation_id = message.causation_id
        if causation_id:
            data = causation_id.encode()
            table += (_CAUSATIONID, _STRING_LENGTH[len(data)], data)
        if traceparent is not None:  # as envelope_headers(): a copy
            table += (_TRACEPARENT_STRING, _STRING_LENGTH[len(traceparent)], traceparent)
        elif extra and "traceparent" in extra:  # of another type
            table += (_TRACEPARENT, field_value(extra["traceparent"]))
        headers = b"".join(table)
        return b"".join(
            (
                _HEAD,
                _LENGTH(len(headers)),
                headers,
                _PERSISTENT,
                _SHORT_LENGTH[len(correlation_id)],
                correlation_id,
                _SHORT_LENGTH[len(event_id)],
                event_id,
                _TIMESTAMP(timestamp),
                kind[3],  # type, app_id
            )
        )
    except (UnsupportedValue, ValueError, TypeError, AttributeError, IndexError, struct.error):
        # Anything unusual (a value of another type, a string too long for a shortstr, ...):
        # the generic encoder, which gives the same bytes or raises the same error as py-amqp.
        return encode_properties(amqp_properties(message))
