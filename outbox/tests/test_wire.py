"""The relay's direct encoding of a row's properties (``wire.encoded_properties``) is byte for byte
the generic one, ``encode_properties(amqp_properties(row))``, itself tested against py-amqp (see
test_framing): for rows of every shape, not just the usual one. And what ``Publisher`` writes to
the socket is what py-amqp's own frame writer would write for ``wire.to_amqp(row)``."""

import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import amqp
import pytest
from amqp import spec
from amqp.serialization import dumps

from outbox import wire
from outbox.claiming import ClaimedRow
from outbox.framing import encode_properties
from outbox.models import OutboxMessage
from outbox.publisher import Publisher
from outbox.wire import amqp_properties, encoded_properties, to_amqp

EVENT_ID = "5b3c2f0e-9d1a-4f6b-8c2e-0123456789ab"  # a claimed row has the text form
SIGNED = {
    # as json.loads gives a row's headers back from jsonb: keys by length, then bytes
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "x-outbox-key-id": "monolith-2026-11",
    "x-outbox-signature": "v1=" + "3f9a" * 16,
}


def claimed_row(**changes: object) -> ClaimedRow:
    """A row as the relay claims it (an order placed, signed, traced), with ``changes``."""
    row = ClaimedRow(
        id=1,
        event_id=EVENT_ID,
        source="fitness.monolith",
        type="orders.order.placed",
        schema_version=1,
        aggregate_type="order",
        aggregate_id="42",
        sequence=3,
        correlation_id=EVENT_ID,
        causation_id="",
        occurred_at=datetime(2026, 11, 27, 10, 0, 4, 123456, tzinfo=UTC),
        headers=dict(SIGNED),
        payload_json='{"order_id": "42", "total": "132.80"}',
        exchange="fitness.orders",
        routing_key="orders.order.placed",
        partition=3,
    )
    for name, value in changes.items():
        setattr(row, name, value)
    return row


def generic(row: object) -> bytes:
    return encode_properties(amqp_properties(row))


SHAPES = {
    "signed and traced": {},
    "no extra headers": {"headers": {}},
    "caused by another event": {"causation_id": "0f8e7d6c-0000-4000-8000-000000000001"},
    "no traceparent": {"headers": {"x-outbox-key-id": "k", "x-outbox-signature": "v1=00"}},
    "traceparent only": {"headers": {"traceparent": SIGNED["traceparent"]}},
    "traceparent not a string": {"headers": {"traceparent": 7}},
    "traceparent null": {"headers": {"traceparent": None}},
    "unicode": {
        "source": "fitness.café",
        "type": "orders.ordér.placed",
        "aggregate_type": "bestellung",
        "aggregate_id": "Größe ☕ 42",
        "correlation_id": "é" * 100,  # 200 bytes: still a shortstr
        "causation_id": "☕",
        "headers": {"grüße": "☕ café", "x-outbox-key-id": "ключ"},
    },
    "int and bool headers": {
        "headers": {
            "big": 2**40,
            "negative": -(2**31) + 1,
            "edge": -(2**31),
            "max": 2**31 - 1,
            "over": 2**31,
            "flag": True,
            "off": False,
            "zero": 0,
        }
    },
    "headers py-amqp encodes": {
        "headers": {"nested": {"a": 1}, "list": [1, "x"], "ratio": 0.5, "none": None}
    },
    "sequence beyond 32 bits": {"sequence": 2**31},
    "sequence at 32 bits": {"sequence": 2**31 - 1},
    "negative 32-bit edge": {"sequence": -(2**31), "schema_version": -(2**31) + 1},
    "huge schema version": {"schema_version": 2**40},
    "schema version at -2**31": {"schema_version": -(2**31)},
    "bool sequence": {"sequence": True},
    "header named like the envelope's": {"headers": {"a": "1", "ce-id": "spoof", "b": "2"}},
    "header named ce-traceparent": {"headers": {"ce-traceparent": "x", "traceparent": "y"}},
    "header with another ce- name": {"headers": {"ce-other": "x", **SIGNED}},
    "long values": {"aggregate_id": "x" * 200, "headers": {"blob": "v" * 5000, **SIGNED}},
    "a value of 1023 and 1024 bytes": {"headers": {"a": "v" * 1023, "b": "w" * 1024}},
    "lone surrogates": {"aggregate_id": "a\ud800b", "headers": {"x": "\udfff", **SIGNED}},
    "event id not a uuid": {"event_id": "not-a-uuid", "correlation_id": "c"},
    "event id as a UUID (a model's)": {"event_id": uuid.UUID(EVENT_ID)},
    "empty strings": {"correlation_id": "", "aggregate_id": "", "source": "", "headers": {"": ""}},
    "no microseconds": {"occurred_at": datetime(2026, 11, 27, 10, 0, 4, tzinfo=UTC)},
    "last microsecond of a year": {
        "occurred_at": datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    },
    "epoch": {"occurred_at": datetime(1970, 1, 1, tzinfo=UTC)},
    "year 2499": {"occurred_at": datetime(2499, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)},
    # int(timestamp()) rounds up here (a float), the minute's start plus the second would not
    "year 2600": {"occurred_at": datetime(2600, 1, 1, 0, 0, 7, 999999, tzinfo=UTC)},
    "offset +02:00": {
        "occurred_at": datetime(2026, 11, 27, 12, 0, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    },
    "zoneinfo UTC": {"occurred_at": datetime(2026, 11, 27, 10, 0, 4, 5, tzinfo=ZoneInfo("UTC"))},
    "zoneinfo Europe/London (+00:00)": {
        "occurred_at": datetime(2026, 11, 27, 10, 0, 4, tzinfo=ZoneInfo("Europe/London"))
    },
    "naive": {"occurred_at": datetime(2026, 11, 27, 10, 0, 4, 5)},
}


@pytest.mark.parametrize("changes", SHAPES.values(), ids=SHAPES.keys())
def test_a_row_is_encoded_like_the_generic_encoder(changes):
    row = claimed_row(**changes)

    assert encoded_properties(row) == generic(row)


# Shapes the generic encoder handles instead (values of other types or sizes, names that clash).
GENERIC_SHAPES = {
    "traceparent null",
    "headers py-amqp encodes",
    "sequence beyond 32 bits",
    "negative 32-bit edge",
    "huge schema version",
    "schema version at -2**31",
    "bool sequence",
    "header named like the envelope's",
    "header named ce-traceparent",
    "long values",
    "a value of 1023 and 1024 bytes",
    "lone surrogates",
}


@pytest.mark.parametrize(
    "changes",
    [changes for name, changes in SHAPES.items() if name not in GENERIC_SHAPES],
    ids=[name for name in SHAPES if name not in GENERIC_SHAPES],
)
def test_usual_rows_do_not_need_the_generic_encoder(changes, monkeypatch):
    # (else the comparisons above would compare the generic encoder with itself)
    def generic_encoder(properties: dict) -> bytes:
        raise AssertionError("took the generic path")

    monkeypatch.setattr(wire, "encode_properties", generic_encoder)

    encoded_properties(claimed_row(**changes))


def test_many_random_rows_are_encoded_like_the_generic_encoder():
    rng = random.Random(20261127)
    texts = ["", "a", "42", "order-7", "é", "☕" * 3, "x" * 120, "Größe", "a\ud800"]
    values = [*texts, 0, 1, -1, 2**31 - 1, 2**31, -(2**31), 2**63 - 1, True, False, None, 0.5]
    start = datetime(2026, 11, 27, 23, 58, tzinfo=UTC)
    for _ in range(1000):
        headers = {
            rng.choice(["traceparent", "x-outbox-key-id", "x-outbox-signature", "k", "ünï"]): (
                rng.choice(values)
            )
            for _ in range(rng.randrange(5))
        }
        row = claimed_row(
            event_id=rng.choice([str, lambda id: id])(uuid.UUID(int=rng.getrandbits(128))),
            source=rng.choice(["fitness.monolith", "payments", "ça"]),
            type=rng.choice(["orders.order.placed", "payments.payment.authorized"]),
            schema_version=rng.choice([1, 2, 2**31, True]),
            aggregate_id=rng.choice(texts),
            sequence=rng.choice([1, 2, 99999, 2**31 - 1, 2**31, 2**40]),
            correlation_id=rng.choice([*texts, str(uuid.UUID(int=rng.getrandbits(128)))]),
            causation_id=rng.choice(["", "", "cause", "☕"]),
            # across a day's and a year's end, about one in ten without microseconds
            occurred_at=start
            + timedelta(
                seconds=rng.randrange(300), microseconds=rng.choice([0, *range(1, 10**6, 9973)])
            ),
            headers=headers,
        )
        assert encoded_properties(row) == generic(row), row


def test_a_model_instance_is_encoded_like_the_generic_encoder():
    for headers in (None, {}, dict(SIGNED)):
        message = OutboxMessage(
            event_id=uuid.UUID(EVENT_ID),
            source="fitness.monolith",
            type="orders.order.placed",
            schema_version=1,
            aggregate_type="order",
            aggregate_id="42",
            sequence=1,
            correlation_id="corr",
            causation_id="cause",
            occurred_at=datetime(2026, 11, 27, 10, 0, 4, 123456, tzinfo=UTC),
            headers=headers,
            payload={"order_id": "42"},
        )

        assert encoded_properties(message) == generic(message)


@pytest.mark.parametrize(
    "changes",
    [
        {"correlation_id": "☕" * 100},  # 300 bytes: over a shortstr's 255
        {"type": "x" * 256},
        {"event_id": "e" * 256},
        {"occurred_at": datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)},  # negative timestamp
        {"occurred_at": None},
    ],
    ids=["correlation id", "type", "event id", "before 1970", "no time"],
)
def test_a_row_that_cannot_be_encoded_fails_like_the_generic_encoder(changes):
    row = claimed_row(**changes)

    with pytest.raises(Exception) as ours:
        encoded_properties(row)
    with pytest.raises(Exception) as theirs:
        generic(row)
    assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))


def test_the_minute_cache_is_bounded_and_stays_right(monkeypatch):
    monkeypatch.setattr(wire, "_MINUTES", {})
    monkeypatch.setattr(wire, "_MINUTES_MAX", 5)
    start = datetime(2026, 11, 27, 10, 0, 4, 123456, tzinfo=UTC)
    for minutes in [*range(12), 3, 0]:
        row = claimed_row(occurred_at=start + timedelta(minutes=minutes))

        assert encoded_properties(row) == generic(row)
        assert len(wire._MINUTES) <= 5


def test_the_kind_cache_is_bounded_and_stays_right(monkeypatch):
    monkeypatch.setattr(wire, "_KINDS", {})
    monkeypatch.setattr(wire, "_KINDS_MAX", 3)
    kinds = [
        {"source": source, "type": event_type, "aggregate_type": aggregate_type}
        for source in ("fitness.monolith", "payments", "ça")
        for event_type in ("orders.order.placed", "payments.payment.authorized")
        for aggregate_type in ("order", "bestellung")
    ]
    for changes in [*kinds, kinds[0], kinds[-1], kinds[1]]:
        row = claimed_row(**changes)

        assert encoded_properties(row) == generic(row)
        assert len(wire._KINDS) <= 3


@pytest.mark.parametrize("version", [True, 1.0, 2.0], ids=["bool", "float", "float 2"])
def test_a_version_equal_to_a_cached_one_of_another_type_is_not_taken_from_the_cache(version):
    # True == 1 == 1.0 as dict keys: each must still be encoded as its own type.
    for schema_version in (1, 2, version, 1, version):
        row = claimed_row(schema_version=schema_version)

        assert encoded_properties(row) == generic(row)


def test_a_kind_the_direct_encoder_cannot_encode_is_not_cached(monkeypatch):
    monkeypatch.setattr(wire, "_KINDS", {})
    surrogate = claimed_row(source="a\ud800")  # not strict UTF-8: the generic encoder's
    too_long = claimed_row(type="x" * 256)  # over a shortstr: py-amqp's error

    assert encoded_properties(surrogate) == generic(surrogate)
    with pytest.raises(Exception):  # noqa: B017 (the same as the generic one's: tested above)
        encoded_properties(too_long)
    assert wire._KINDS == {}


class _CapturingPublisher(Publisher):
    """A publisher on a pretend connection that keeps what would go to the socket."""

    def __init__(self, *, frame_max: int, max_message_bytes: int = 10**6) -> None:
        super().__init__(
            url="amqp://unused", confirm_timeout=5, max_message_bytes=max_message_bytes
        )
        self.written = bytearray()

        def no_confirms(timeout: float) -> None:
            raise TimeoutError

        self._connection = SimpleNamespace(
            frame_max=frame_max, transport=SimpleNamespace(write=self.written.extend)
        )
        self._connection.drain_events = no_confirms
        self._channel = SimpleNamespace(channel_id=7)
        self._known_exchanges = {"fitness.orders", "fitness.payments"}


def pyamqp_frames(row: ClaimedRow, *, frame_max: int) -> bytes:
    """What py-amqp's ``basic_publish`` hands to the socket for ``row`` on channel 7."""
    written = bytearray()
    connection = SimpleNamespace(frame_max=frame_max, bytes_sent=0)
    write = amqp.method_framing.frame_writer(connection, SimpleNamespace(write=written.extend))
    arguments = dumps("Bssbb", (0, row.exchange, row.routing_key, True, False))
    write(1, 7, spec.Basic.Publish, arguments, to_amqp(row))
    return bytes(written)


@pytest.mark.parametrize("frame_max", [131072, 4096])
def test_the_publisher_writes_what_pyamqp_would(frame_max):
    rows = [
        claimed_row(),
        claimed_row(event_id=str(uuid.uuid4()), causation_id="cause", headers={}),
        # the generic path: a header value py-amqp encodes
        claimed_row(event_id=str(uuid.uuid4()), headers={"ratio": 0.5, **SIGNED}),
        claimed_row(event_id=str(uuid.uuid4()), correlation_id="☕" * 100),  # cannot be encoded
        claimed_row(
            event_id=str(uuid.uuid4()),
            exchange="fitness.payments",
            routing_key="payments.payment.authorized",
            payload_json='{"blob": "' + "x" * 10_000 + '"}',  # several frames at 4096
        ),
        claimed_row(event_id=str(uuid.uuid4()), payload_json=""),  # no body frame at all
    ]
    publisher = _CapturingPublisher(frame_max=frame_max)

    publisher.send(rows)

    good = [row for index, row in enumerate(rows) if index != 3]
    assert bytes(publisher.written) == b"".join(pyamqp_frames(r, frame_max=frame_max) for r in good)
    (failure,) = publisher.collect().failed
    assert failure.message is rows[3]
    assert failure.terminal
    assert failure.error.startswith("cannot be encoded as AMQP")
    assert publisher.in_flight == len(good)
