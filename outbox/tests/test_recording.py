"""record_event: inside the caller's transaction, validated, with a full CloudEvents envelope."""

import dataclasses
import re
import threading
import time
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from outbox.checks import check_future_skew
from outbox.exceptions import (
    InvalidOccurredAt,
    InvalidPayload,
    NotInTransaction,
    UnknownEventType,
)
from outbox.models import AggregateSequence, OutboxMessage
from outbox.partitioning import partition_for
from outbox.recording import record_event
from outbox.registry import EventType, register, unregister
from outbox.signing import SigningConfigError

from .helpers import make_payload

pytestmark = pytest.mark.django_db


TEST_SERVICE_KEY = "test.service:ts-1:" + "s" * 40


def test_record_fills_the_envelope(event_type, settings):
    settings.OUTBOX_SOURCE = "test.service"
    settings.OUTBOX_SIGNING_KEYS = f"{TEST_SERVICE_KEY},other.service:os-1:{'o' * 40}"
    settings.OUTBOX_PARTITIONS = 8

    with transaction.atomic():
        message = record_event(
            event_type,
            aggregate_id="o-42",
            payload=make_payload("o-42"),
            causation_id="cause-1",
            headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        )

    message.refresh_from_db()
    assert isinstance(message.event_id, uuid.UUID)
    assert message.source == "test.service"
    assert (message.type, message.schema_version) == (event_type.type, 1)
    assert (message.aggregate_type, message.aggregate_id, message.sequence) == ("order", "o-42", 1)
    assert message.correlation_id == str(message.event_id)  # a saga's first event
    assert message.causation_id == "cause-1"
    assert (message.exchange, message.routing_key) == (event_type.exchange, event_type.type)
    assert message.partition == partition_for("order", "o-42", 8)
    assert message.payload == make_payload("o-42")
    assert message.headers["traceparent"].startswith("00-0af7")
    # signed in this process with the source's own key (the relay never needs it)
    assert message.headers["x-outbox-key-id"] == "ts-1"
    assert message.headers["x-outbox-signature"].startswith("v1=")
    assert message.state == OutboxMessage.State.PENDING
    assert message.attempts == 0
    assert message.created_at is not None and message.next_attempt_at is not None


def test_an_event_type_naming_its_own_source_overrides_the_process_source(event_type, settings):
    # given a split-out service's event type living in the same code base as the monolith
    settings.OUTBOX_SOURCE = "fitness.monolith"
    own = dataclasses.replace(event_type, version=2, source="fitness.payments")
    register(own)
    try:
        # when it is recorded
        with transaction.atomic():
            message = record_event(own, aggregate_id="o-1", payload=make_payload("o-1"))
    finally:
        unregister(own)

    # then the envelope names the service, not the process
    assert message.source == "fitness.payments"


def test_sequence_is_per_aggregate_and_correlation_is_kept(event_type):
    with transaction.atomic():
        a1 = record_event(event_type, aggregate_id="a", payload=make_payload(), correlation_id="c")
        b1 = record_event(event_type, aggregate_id="b", payload=make_payload())
        a2 = record_event(event_type, aggregate_id="a", payload=make_payload(), correlation_id="c")

    assert (a1.sequence, a2.sequence, b1.sequence) == (1, 2, 1)
    assert a1.correlation_id == a2.correlation_id == "c"


def test_rolled_back_event_leaves_no_row_and_no_gap(event_type):
    with transaction.atomic():
        record_event(event_type, aggregate_id="a", payload=make_payload())
    with pytest.raises(RuntimeError), transaction.atomic():
        record_event(event_type, aggregate_id="a", payload=make_payload())
        raise RuntimeError("the business change failed")
    with transaction.atomic():
        third = record_event(event_type, aggregate_id="a", payload=make_payload())

    assert OutboxMessage.objects.filter(aggregate_id="a").count() == 2
    assert third.sequence == 2  # the rolled-back number was handed out again: gap-free


@pytest.mark.django_db(transaction=True)
def test_recording_outside_a_transaction_is_refused(event_type):
    with pytest.raises(NotInTransaction, match=r"transaction\.atomic"):
        record_event(event_type, aggregate_id="a", payload=make_payload())

    assert not OutboxMessage.objects.exists()


@pytest.mark.parametrize(
    ("bad_payload", "path", "reason"),
    [
        ({"total": "1.00"}, "$", "'order_id' is a required property"),
        (make_payload(total="1.5"), "$.total", "does not match"),
        (
            {**make_payload(), "lines": [{"sku": "x", "quantity": 0}]},
            "$.lines[0].quantity",
            "less than the minimum",
        ),
        (["not", "an", "object"], "$", "JSON object"),
        ({**make_payload(), "note": "a\x00b"}, "$.note", "NUL characters"),
        (
            {**make_payload(), "lines": [{"sku": "\ud800", "quantity": 1}]},
            "$.lines[0].sku",
            "lone surrogate",
        ),
        ({**make_payload(), "a\x00": 1}, "$.a\x00", "NUL characters"),
    ],
)
def test_invalid_payload_is_refused_with_its_path(event_type, bad_payload, path, reason):
    with pytest.raises(InvalidPayload) as error, transaction.atomic():
        record_event(event_type, aggregate_id="a", payload=bad_payload)

    assert error.value.path == path
    assert reason in error.value.reason
    assert event_type.type in str(error.value)


@pytest.mark.parametrize("name", ["correlation_id", "causation_id"])
def test_an_id_longer_than_the_envelope_allows_is_refused_clearly(event_type, name):
    with pytest.raises(ValueError, match=f"{name} is longer than 100"), transaction.atomic():
        record_event(event_type, aggregate_id="a", payload=make_payload(), **{name: "x" * 101})

    assert not OutboxMessage.objects.exists()


def test_non_json_values_are_refused_clearly(event_type):
    with pytest.raises(InvalidPayload, match="pass decimals"), transaction.atomic():
        record_event(
            event_type, aggregate_id="a", payload={"order_id": "a", "total": Decimal("1.00")}
        )


def test_reserved_or_odd_headers_are_refused(event_type):
    with pytest.raises(InvalidPayload, match="ce-"), transaction.atomic():
        record_event(event_type, aggregate_id="a", payload=make_payload(), headers={"ce-id": "x"})
    # the signature is the outbox's to write, never the caller's
    forged = {"x-outbox-signature": "v1=00", "x-outbox-key-id": "dev-monolith-1"}
    with pytest.raises(InvalidPayload, match="x-outbox-"), transaction.atomic():
        record_event(event_type, aggregate_id="a", payload=make_payload(), headers=forged)
    with pytest.raises(InvalidPayload, match="str, int or bool"), transaction.atomic():
        record_event(event_type, aggregate_id="a", payload=make_payload(), headers={"x": 1.5})


def test_unregistered_event_type_is_refused(event_type):
    stranger = EventType(
        type="test.never.registered",
        version=1,
        exchange="x",
        aggregate_type="order",
        schema={},
        description="Never registered.",
    )
    with pytest.raises(UnknownEventType), transaction.atomic():
        record_event(stranger, aggregate_id="a", payload={})


@pytest.mark.django_db(transaction=True)
def test_writers_of_one_aggregate_are_serialised_in_commit_order(event_type):
    # Given a transaction that recorded an event for aggregate "a" and has not committed yet
    first_recorded, release_first = threading.Event(), threading.Event()

    def first_writer() -> None:
        try:
            with transaction.atomic():
                record_event(event_type, aggregate_id="a", payload=make_payload("first"))
                first_recorded.set()
                release_first.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=first_writer)
    thread.start()
    assert first_recorded.wait(10)

    # When a second writer records for "a" (it waits on the first one's sequence row lock)
    def release_soon() -> None:
        time.sleep(0.3)
        release_first.set()

    threading.Thread(target=release_soon).start()
    started = time.monotonic()
    with transaction.atomic():
        second = record_event(event_type, aggregate_id="a", payload=make_payload("second"))
    thread.join(10)

    # Then it got the next number only once the first had committed
    assert time.monotonic() - started >= 0.25
    (first,) = [m for m in OutboxMessage.objects.all() if m.payload["order_id"] == "first"]
    assert (first.sequence, second.sequence) == (1, 2)
    assert first.id < second.id


def test_an_event_whose_source_has_no_signing_key_is_refused_and_rolled_back(event_type, settings):
    # given a process whose keys do not include its own source
    settings.OUTBOX_SOURCE = "test.service"
    settings.OUTBOX_SIGNING_KEYS = f"other.service:os-1:{'o' * 40}"
    # when it records an event, then it fails loudly, before anything is written
    refused = pytest.raises(
        SigningConfigError, match=re.escape("no signing key for source 'test.service'")
    )
    with refused, transaction.atomic():
        record_event(event_type, aggregate_id="nokey", payload=make_payload())
    assert not OutboxMessage.objects.filter(aggregate_id="nokey").exists()
    # and a caller that catches the error and commits finds no trace, not even a sequence
    with transaction.atomic(), pytest.raises(SigningConfigError):
        record_event(event_type, aggregate_id="nokey", payload=make_payload())
    assert not AggregateSequence.objects.filter(aggregate_id="nokey").exists()


# --- occurred_at: any past time, never naive, never beyond OUTBOX_MAX_FUTURE_SKEW ahead ---------


@pytest.mark.django_db(transaction=True)
def test_an_occurred_at_beyond_the_skew_is_refused_and_its_transaction_commits_nothing(
    event_type,
):
    # given a transaction that already recorded one event (the caller's other write)
    future = timezone.now() + timedelta(hours=1)
    # when it records a second event dated an hour ahead, and lets the error propagate
    with pytest.raises(InvalidOccurredAt) as error, transaction.atomic():
        record_event(event_type, aggregate_id="ok", payload=make_payload("ok"))
        record_event(event_type, aggregate_id="late", payload=make_payload(), occurred_at=future)

    # then the message says the value, the limit and what to do
    message = str(error.value)
    assert f"invalid event time for {event_type.type} v1 at occurred_at" in message
    assert future.isoformat() in message and re.search(r"is 3\d{3} s ahead of now", message)
    assert "OUTBOX_MAX_FUTURE_SKEW=300 s" in message
    assert "pass the time the event happened" in message
    # reported like any invalid event
    assert isinstance(error.value, InvalidPayload) and error.value.path == "occurred_at"
    # and nothing of the transaction was committed: no event, no sequence number
    assert not OutboxMessage.objects.exists()
    assert not AggregateSequence.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_refused_occurred_at_writes_nothing_before_it_raises(event_type):
    # given a caller that records one event, then catches the refusal of a future-dated one
    with transaction.atomic():
        record_event(event_type, aggregate_id="ok", payload=make_payload("ok"))
        with pytest.raises(InvalidOccurredAt):
            record_event(
                event_type,
                aggregate_id="late",
                payload=make_payload(),
                occurred_at=timezone.now() + timedelta(days=30),
            )
        # when its transaction goes on (no SQL failed: it is not aborted) and commits
        record_event(event_type, aggregate_id="ok", payload=make_payload("ok"))

    # then its own events are there, and the refused one left no trace, not even its sequence
    assert list(OutboxMessage.objects.values_list("aggregate_id", "sequence")) == [
        ("ok", 1),
        ("ok", 2),
    ]
    assert not AggregateSequence.objects.filter(aggregate_id="late").exists()


@pytest.mark.parametrize(
    "offset",
    [
        timedelta(seconds=240),  # a producer clock a little ahead: within the skew
        timedelta(seconds=-1),
        timedelta(days=-7 * 365),  # an import or replay of an old event
    ],
    ids=["ahead within the skew", "just now", "years ago"],
)
def test_an_occurred_at_not_beyond_the_skew_is_kept_as_given(event_type, offset):
    occurred_at = timezone.now() + offset

    with transaction.atomic():
        message = record_event(
            event_type, aggregate_id="a", payload=make_payload(), occurred_at=occurred_at
        )

    message.refresh_from_db()
    assert message.occurred_at == occurred_at


@pytest.mark.parametrize(
    "occurred_at",
    [
        datetime(2026, 1, 1, 12, 0),  # naive: whose noon?
        datetime.now(),  # the usual slip: naive "now"
        date(2026, 1, 1),
        "2026-01-01T12:00:00Z",
    ],
    ids=["naive", "naive now", "date", "text"],
)
def test_an_occurred_at_that_is_not_an_aware_datetime_is_refused(event_type, occurred_at):
    refused = pytest.raises(InvalidOccurredAt, match="not a timezone-aware datetime")
    with refused, transaction.atomic():
        record_event(event_type, aggregate_id="a", payload=make_payload(), occurred_at=occurred_at)

    assert not OutboxMessage.objects.exists()


def test_the_allowed_skew_is_the_outbox_max_future_skew_setting(event_type):
    def record(seconds_ahead: int) -> OutboxMessage:
        with transaction.atomic():
            return record_event(
                event_type,
                aggregate_id="a",
                payload=make_payload(),
                occurred_at=timezone.now() + timedelta(seconds=seconds_ahead),
            )

    # a shop that trusts its clocks to the second
    strict = pytest.raises(InvalidOccurredAt, match=r"OUTBOX_MAX_FUTURE_SKEW=0 s")
    with override_settings(OUTBOX_MAX_FUTURE_SKEW=0), strict:
        record(5)
    # one that imports events from machines it does not control
    with override_settings(OUTBOX_MAX_FUTURE_SKEW=7200):
        assert record(3600).sequence == 1
        with pytest.raises(InvalidOccurredAt, match=r"OUTBOX_MAX_FUTURE_SKEW=7200 s"):
            record(7300)


@pytest.mark.parametrize("skew", [float("nan"), float("inf"), -1.0, 86400.0, 7 * 86400.0])
def test_a_skew_setting_that_would_switch_the_check_off_refuse_the_present_or_outrun_the_inbox(
    skew, settings
):
    settings.OUTBOX_MAX_FUTURE_SKEW = skew
    (error,) = check_future_skew()
    assert error.id == "outbox.E003" and repr(skew) in error.msg


@pytest.mark.parametrize("skew", [0, 300, 86399])
def test_a_sensible_skew_setting_passes_the_check(settings, skew):
    settings.OUTBOX_MAX_FUTURE_SKEW = skew
    assert check_future_skew() == []
