"""Bulk-encoded ``basic.publish`` frames are byte for byte what py-amqp itself would write."""

from types import SimpleNamespace

import amqp
import pytest
from amqp import spec
from amqp.serialization import dumps

from outbox.framing import encode_properties, publish_frames

EXCHANGE, KEY = "fitness.orders", "orders.order.placed"


class _CapturingTransport:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += bytes(data)


def pyamqp_frames(message: amqp.Message, *, frame_max: int) -> bytes:
    """What py-amqp's ``basic_publish`` hands to the socket for ``message`` on channel 7."""
    transport = _CapturingTransport()
    connection = SimpleNamespace(frame_max=frame_max, bytes_sent=0)
    write = amqp.method_framing.frame_writer(connection, transport)
    write(1, 7, spec.Basic.Publish, dumps("Bssbb", (0, EXCHANGE, KEY, True, False)), message)
    return bytes(transport.data)


def ours(body: bytes, properties: dict, *, frame_max: int) -> bytes:
    return publish_frames(
        body=body,
        properties=encode_properties(properties),
        channel_id=7,
        frame_max=frame_max,
        exchange=EXCHANGE,
        routing_key=KEY,
        mandatory=True,
    )


def relay_properties(**headers: object) -> dict:
    """Properties as the relay sets them (outbox.wire.amqp_properties)."""
    return {
        "content_type": "application/json",
        "delivery_mode": 2,
        "message_id": "5b3c2f0e-0000-4000-8000-000000000001",
        "correlation_id": "corr",
        "type": "orders.order.placed",
        "app_id": "fitness.monolith",
        "timestamp": 1_790_000_000,
        "application_headers": {
            "ce-id": "x",
            "ce-sequence": 3,
            "ce-time": "2026-11-27T03:00:00Z",
            **headers,
        },
    }


def test_relay_message_is_encoded_like_pyamqp():
    body = b'{"order_id": "o-1", "total": "10.00"}'
    properties = relay_properties(traceparent="00-abc-01", flag=True, off=False)

    assert ours(body, properties, frame_max=131072) == pyamqp_frames(
        amqp.Message(body, **properties), frame_max=131072
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"big": 2**40, "negative": -(2**31) + 1, "edge": -(2**31)},  # 64-bit and 32-bit ints
        {"nested": {"a": 1}, "list": [1, "x"], "ratio": 0.5, "none": None},  # py-amqp's path
        {"unicode": "café ☕"},
    ],
)
def test_other_header_values_are_encoded_like_pyamqp(headers):
    properties = relay_properties(**headers)
    message = amqp.Message(b"{}", **properties)

    assert encode_properties(properties) == message._serialize_properties()


def test_body_larger_than_a_frame_is_split_like_pyamqp():
    body = b"x" * 10_000
    properties = relay_properties()

    encoded = ours(body, properties, frame_max=4096)

    assert encoded == pyamqp_frames(amqp.Message(body, **properties), frame_max=4096)
    assert encoded.count(b"\xce\x03\x00\x07") == 3  # three body frames (type 3, channel 7)


@pytest.mark.parametrize("body", [b"", b"x", b"x" * 4088, b"x" * 4089], ids=len)
def test_bodies_at_the_edges_of_a_frame_are_framed_like_pyamqp(body):
    # no body frame for an empty body; one frame up to frame_max - 8 bytes, then two
    properties = relay_properties()

    assert ours(body, properties, frame_max=4096) == pyamqp_frames(
        amqp.Message(body, **properties), frame_max=4096
    )


def test_a_value_pyamqp_cannot_encode_fails_the_same_way():
    properties = {**relay_properties(), "correlation_id": "x" * 300}  # shortstr > 255 bytes

    with pytest.raises(Exception) as ours_error:
        encode_properties(properties)
    with pytest.raises(Exception) as their_error:
        amqp.Message(b"", **properties)._serialize_properties()
    assert type(ours_error.value) is type(their_error.value)
