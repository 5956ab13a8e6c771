"""AMQP 0-9-1 frames of ``basic.publish``, encoded in bulk instead of one socket write each.

py-amqp's ``basic_publish`` writes every message with its own ``sendall`` and goes through a
promise, a lock and two socket-timeout changes on the way, and its generic serialiser
interprets a format string value by value: together most of the relay's CPU per message. Here
the relay encodes the three frames of each message (method, content header, body) as a few
byte strings (``publish_pieces``; ``publish_frames`` joins them into one) and writes many
messages at once. The bytes are exactly what py-amqp's own
``frame_writer`` produces for the same message (the tests compare them); property values this
encoder does not know (nested tables, floats, ... in a row's extra headers) are serialised by
py-amqp itself.
"""

import functools
import struct

import amqp
from amqp import spec
from amqp.serialization import dumps

FRAME_METHOD, FRAME_HEADER, FRAME_BODY = 1, 2, 3
# A frame is type (octet), channel (short), size (long), payload, then the frame-end octet.
FRAME_OVERHEAD = 8
_FRAME_START = struct.Struct(">BHI")
_FRAME_END_OCTET = 0xCE
_FRAME_END = bytes((_FRAME_END_OCTET,))
_CLASS_ID = spec.Basic.CLASS_ID
# A content header frame's start and the fixed part of its payload: frame type, channel, frame
# size, then class id, weight (always 0), body size; the property flags and values follow.
_HEADER_FRAME = struct.Struct(">BHIHHQ")
_CONTENT_HEADER_SIZE = 12
# A shortstr (exchange, routing key, most properties) carries at most 255 bytes of UTF-8.
SHORTSTR_MAX_BYTES = 255
# The end of the header frame and the start of a body frame (type, channel, size), in one pack.
_BODY_FRAME = struct.Struct(">BBHI")
_BASIC_PUBLISH = struct.pack(">HH", *spec.Basic.Publish)
_FLAGS = struct.Struct(">H")
_LONG = struct.Struct(">I")
_LONGLONG = struct.Struct(">Q")
_INT32 = struct.Struct(">ci")
_INT64 = struct.Struct(">cq")
_STRING_START = struct.Struct(">cI")
INT32_MAX = 2147483647

# py-amqp's property list, in wire order: bit 15 is the first property, 14 the second, ...
_LAYOUT = [
    (1 << (15 - index), name, kind) for index, (name, kind) in enumerate(amqp.Message.PROPERTIES)
]


class UnsupportedValue(Exception):
    """A value this encoder leaves to py-amqp's generic serialiser."""


@functools.lru_cache(maxsize=4096)
def method_frame(channel_id: int, exchange: str, routing_key: str, mandatory: bool) -> bytes:
    """The ``basic.publish`` method frame: the same for every message to one destination."""
    arguments = bytes(dumps("Bssbb", (0, exchange, routing_key, mandatory, False)))
    payload = _BASIC_PUBLISH + arguments
    return _FRAME_START.pack(FRAME_METHOD, channel_id, len(payload)) + payload + _FRAME_END


def encode_properties(properties: dict) -> bytes:
    """The basic properties (flags and values) as py-amqp's ``_serialize_properties`` writes
    them, for the property types a relay sends; anything else goes to py-amqp."""
    try:
        flags = 0
        parts: list[bytes] = []
        for bit, name, kind in _LAYOUT:
            value = properties.get(name)
            if value is None:
                continue
            flags |= bit
            if kind == "s":
                parts.append(_shortstr(value))
            elif kind == "F":
                parts.append(_table(value))
            elif kind == "o":
                parts.append(bytes((value,)))
            elif kind == "L":
                parts.append(_LONGLONG.pack(value))
            else:
                raise UnsupportedValue(kind)
        return _FLAGS.pack(flags) + b"".join(parts)
    except (UnsupportedValue, ValueError, TypeError, AttributeError, struct.error):
        # The generic path raises the same errors py-amqp's basic_publish would.
        return amqp.Message(**properties)._serialize_properties()


def publish_frames(
    *,
    body: bytes,
    properties: bytes,
    channel_id: int,
    frame_max: int,
    exchange: str,
    routing_key: str,
    mandatory: bool,
) -> bytes:
    """Every frame of one ``basic.publish`` (``properties`` from ``encode_properties``; the
    body split at ``frame_max``)."""
    method = method_frame(channel_id, exchange, routing_key, mandatory)
    return b"".join(publish_pieces(method, channel_id, frame_max, body, properties))


def publish_pieces(
    method: bytes, channel_id: int, frame_max: int, body: bytes, properties: bytes
) -> tuple[bytes, ...]:
    """``publish_frames`` in pieces, to be joined with the other messages of one write (one
    join per write instead of one per message); ``method`` from ``method_frame``."""
    size = len(body)
    header = _HEADER_FRAME.pack(
        FRAME_HEADER, channel_id, _CONTENT_HEADER_SIZE + len(properties), _CLASS_ID, 0, size
    )
    if size <= frame_max - FRAME_OVERHEAD:
        if not size:  # no body frame at all, like py-amqp
            return (method, header, properties, _FRAME_END)
        # The usual message: one body frame; the end of the header frame and the start of the
        # body frame packed together.
        body_start = _BODY_FRAME.pack(_FRAME_END_OCTET, FRAME_BODY, channel_id, size)
        return (method, header, properties, body_start, body, _FRAME_END)
    parts = [method, header, properties, _FRAME_END]
    chunk = frame_max - FRAME_OVERHEAD
    for start in range(0, size, chunk):
        piece = body[start : start + chunk]
        parts += (_FRAME_START.pack(FRAME_BODY, channel_id, len(piece)), piece, _FRAME_END)
    return tuple(parts)


def header_frame_size(properties: bytes) -> int:
    """The whole content header frame that carries ``properties`` (from ``encode_properties``).

    Unlike a body, a content header cannot be split over frames: a frame larger than the
    connection's ``frame_max`` makes RabbitMQ close the whole connection (``FRAME_ERROR``,
    ``frame_too_large``), so a message whose header frame is larger can never be published.
    """
    return FRAME_OVERHEAD + _CONTENT_HEADER_SIZE + len(properties)


def fits_shortstr(value: str) -> bool:
    """Whether ``value`` fits an AMQP shortstr: 255 bytes of UTF-8, not 255 characters."""
    return len(value.encode("utf-8", "surrogatepass")) <= SHORTSTR_MAX_BYTES


def _shortstr(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return bytes((len(data),)) + data  # ValueError above 255 bytes, like py-amqp's error


@functools.lru_cache(maxsize=1024)
def header_name(name: str) -> bytes:
    """A header (field table) name as it is encoded, a shortstr: a handful of names, each
    encoded once."""
    return _shortstr(name)


def field_value(value: object) -> bytes:
    """A header value with its type tag, as py-amqp writes it, for the types a relay sends
    (str, bool, int); raises ``UnsupportedValue`` for any other type."""
    kind = type(value)
    if kind is str:
        data = value.encode("utf-8", "surrogatepass")
        return _STRING_START.pack(b"S", len(data)) + data
    if kind is bool:
        return b"t\x01" if value else b"t\x00"
    if kind is int:
        wide = value > INT32_MAX or value < -INT32_MAX
        return _INT64.pack(b"L", value) if wide else _INT32.pack(b"I", value)
    raise UnsupportedValue(kind)


def property_flags(*names: str) -> bytes:
    """The property flags of a message that sets exactly the properties ``names``."""
    unknown = set(names) - {name for _, name, _ in _LAYOUT}
    if unknown:
        raise ValueError(f"not AMQP basic properties: {sorted(unknown)}")
    return _FLAGS.pack(sum(bit for bit, name, _ in _LAYOUT if name in names))


def _table(table: dict) -> bytes:
    parts: list[bytes] = []
    for key, value in table.items():
        parts += (header_name(key), field_value(value))
    data = b"".join(parts)
    return _LONG.pack(len(data)) + data
