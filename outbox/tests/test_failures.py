"""Rows that cannot be published are retried with backoff and parked; the others keep flowing."""

import json
import select
import time
from collections.abc import Iterator
from dataclasses import dataclass

import amqp
import pytest
from django.db import transaction

from outbox.conf import get_settings
from outbox.models import OutboxMessage
from outbox.publisher import Publisher
from outbox.recording import record_event
from outbox.registry import EventType
from outbox.relay import Relay
from outbox.services import outbox_message_retry
from outbox.wire import encoded_properties

from .helpers import bind_queue, get_messages, make_payload, unique

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def quick_retries(settings):
    # Long enough that one `--once` run does not retry a row it just failed, short for tests.
    settings.OUTBOX_MAX_ATTEMPTS = 2
    settings.OUTBOX_BACKOFF_BASE = 0.3
    settings.OUTBOX_BACKOFF_MAX = 0.3


def after_backoff() -> None:
    time.sleep(0.35)


def relay_once() -> int:
    return Relay(once=True).run()


def record(event_type, aggregate_id: str) -> OutboxMessage:
    with transaction.atomic():
        payload = make_payload(aggregate_id)
        return record_event(event_type, aggregate_id=aggregate_id, payload=payload)


def assert_parked_at_once(row: OutboxMessage, reason: str) -> None:
    """``row`` was parked after one attempt (retrying cannot help), ``reason`` in its error."""
    row.refresh_from_db()
    assert (row.state, row.attempts) == (OutboxMessage.State.PARKED, 1)
    assert reason in row.last_error


def published_ids(broker, queue: str, count: int) -> list[str]:
    return [m.properties["message_id"] for m in get_messages(broker, queue, count, timeout=2)]


def test_unroutable_row_is_retried_then_parked_while_others_flow(make_event_type, broker):
    # Given an event nobody is bound to (mandatory makes it come back) next to a routable one
    shared_exchange = unique("test.outbox")
    routed = make_event_type(exchange=shared_exchange)
    unroutable = make_event_type(exchange=shared_exchange)
    queue = bind_queue(broker, shared_exchange, routed.type)
    bad = record(unroutable, "o-bad")
    good = record(routed, "o-good")

    # When the relay runs
    relay_once()

    # Then the routable one is published, the other one waits for a retry with its error
    assert published_ids(broker, queue, 1) == [str(good.event_id)]
    bad.refresh_from_db()
    assert (bad.state, bad.attempts) == (OutboxMessage.State.PENDING, 1)
    assert "NO_ROUTE" in bad.last_error
    assert bad.next_attempt_at > bad.created_at

    # And after its last attempt it is parked, keeping the error
    after_backoff()
    relay_once()
    bad.refresh_from_db()
    assert (bad.state, bad.attempts) == (OutboxMessage.State.PARKED, 2)
    assert "NO_ROUTE" in bad.last_error


def test_row_for_a_missing_exchange_does_not_spoil_its_batch(make_event_type, broker):
    missing = make_event_type(declare=False)
    present = make_event_type()
    queue = bind_queue(broker, present.exchange)
    before = record(present, "o-1")
    bad = record(missing, "o-2")
    after = record(present, "o-3")

    relay_once()

    assert published_ids(broker, queue, 2) == [str(before.event_id), str(after.event_id)]
    bad.refresh_from_db()
    assert bad.state == OutboxMessage.State.PENDING
    assert "does not exist" in bad.last_error


def test_exchange_deleted_under_a_live_channel(make_event_type, broker):
    # Given a publisher that already knows exchange X exists
    doomed, survivor = make_event_type(), make_event_type()
    queue = bind_queue(broker, survivor.exchange)
    bind_queue(broker, doomed.exchange)
    publisher = Publisher(url=get_settings().broker_url, confirm_timeout=5, max_message_bytes=10**6)
    publisher.connect()
    try:
        assert publisher.publish([record(doomed, "o-1")]).published

        # When X is deleted and a round mixes rows for X and for another exchange
        broker.exchange_delete(doomed.exchange)
        lost, bystander = record(doomed, "o-2"), record(survivor, "o-3")
        result = publisher.publish([lost, bystander])

        # Then the broker closed the channel: X's row failed, the bystander is left for later
        assert [f.message.id for f in result.failed] == [lost.id]
        assert "NOT_FOUND" in result.failed[0].error
        assert [m.id for m in result.unsettled] == [bystander.id]

        # And the publisher recovers on a fresh channel
        assert [m.id for m in publisher.publish([bystander]).published] == [bystander.id]
        assert published_ids(broker, queue, 1) == [str(bystander.event_id)]
    finally:
        publisher.close()


@dataclass
class UnreadChannelClose:
    publisher: Publisher
    lost: OutboxMessage  # sent to exchange X after X was deleted
    bystander: OutboxMessage  # sent to exchange S right after it
    survivor: EventType  # S's event type
    bystanders: str  # S's queue


@pytest.fixture
def unread_channel_close(make_event_type, broker) -> Iterator[UnreadChannelClose]:
    """A publisher that knows exchange X exists, X deleted, a row for X and a bystander sent:
    the broker's close of the publishing channel waits, unread, in the socket."""
    doomed, survivor = make_event_type(), make_event_type()
    bind_queue(broker, doomed.exchange)
    bystanders = bind_queue(broker, survivor.exchange)
    publisher = Publisher(url=get_settings().broker_url, confirm_timeout=3, max_message_bytes=10**6)
    publisher.connect()
    try:
        assert publisher.publish([record(doomed, "d-1")]).published
        broker.exchange_delete(doomed.exchange)
        lost, bystander = record(doomed, "d-2"), record(survivor, "s-1")
        publisher.send([lost, bystander])
        assert select.select([publisher.fileno()], [], [], 5)[0]
        yield UnreadChannelClose(publisher, lost, bystander, survivor, bystanders)
    finally:
        publisher.close()


def test_publishing_channel_closed_while_checking_a_new_exchange(
    unread_channel_close, make_event_type, broker
):
    publisher, lost, bystander = (
        unread_channel_close.publisher,
        unread_channel_close.lost,
        unread_channel_close.bystander,
    )
    newcomer = make_event_type()
    newcomers = bind_queue(broker, newcomer.exchange)

    # When the next send checks an exchange Y it has never seen: the close is read while the
    # passive declare of Y waits for its answer
    fresh = record(newcomer, "n-1")
    publisher.send([fresh])
    result = publisher.collect()

    # Then it is handled as the publishing channel's close: X's row failed, the others are
    # published again later; Y's row is not failed as "does not exist"
    assert [f.message.id for f in result.failed] == [lost.id]
    assert "NOT_FOUND" in result.failed[0].error
    assert {m.id for m in result.unsettled} == {bystander.id, fresh.id}
    assert result.connection_error is None

    # And the next rounds get their confirms at once on a fresh confirm-mode channel, and
    # exchange checks get their own answers (Y exists, Z does not)
    again = publisher.publish([bystander, fresh])
    assert ([m.id for m in again.published], again.failed) == ([bystander.id, fresh.id], [])
    nowhere = record(make_event_type(declare=False), "z-1")
    assert "does not exist" in publisher.publish([nowhere]).failed[0].error
    assert published_ids(broker, unread_channel_close.bystanders, 1) == [str(bystander.event_id)]
    assert published_ids(broker, newcomers, 1) == [str(fresh.event_id)]


def test_publishing_channel_closed_while_checking_a_missing_exchange(
    unread_channel_close, make_event_type
):
    publisher, lost = unread_channel_close.publisher, unread_channel_close.lost
    missing = make_event_type(declare=False)

    # When the next send checks a missing exchange Y: py-amqp may read the broker's answers to
    # both channels in one go and raise only the check's (the publishing channel's is lost)
    publisher.send([record(missing, "m-1")])
    result = publisher.collect()

    # Then the publishing channel's close is noticed all the same: X's row failed
    assert lost.id in [f.message.id for f in result.failed]
    assert (result.published, result.connection_error) == ([], None)

    # And the next round gets its confirms at once (not after the confirm timeout), and Y's
    # row fails as it should
    other = record(unread_channel_close.survivor, "s-2")
    again = publisher.publish([record(missing, "m-2"), other])
    assert ([m.id for m in again.published], again.connection_error) == ([other.id], None)
    assert "does not exist" in again.failed[0].error


class RefusingChecks(Publisher):
    """A publisher whose exchange check meets a channel error other than "not found" (say,
    access refused). Injected here because no setting of the real broker produced one."""

    def _exchange_exists(self, name: str) -> bool:
        raise amqp.exceptions.AccessRefused(f"no access to exchange {name!r}")


def test_rows_a_channel_error_stopped_before_they_were_written_are_unsettled(event_type, broker):
    queue = bind_queue(broker, event_type.exchange)
    rows = [record(event_type, "o-1"), record(event_type, "o-2")]
    publisher = RefusingChecks(
        url=get_settings().broker_url, confirm_timeout=5, max_message_bytes=10**6
    )
    publisher.connect()
    try:
        # When the error comes before any row is written
        publisher.send(rows)
        result = publisher.collect()
    finally:
        publisher.close()

    # Then every row is accounted for (unsettled: published again later), none held or lost
    assert [m.event_id for m in result.unsettled] == [r.event_id for r in rows]
    assert (result.published, result.failed) == ([], [])
    assert get_messages(broker, queue, 1, timeout=0.5) == []


def test_too_large_row_is_parked_at_once(event_type, broker, settings):
    settings.OUTBOX_MAX_MESSAGE_BYTES = 1500
    queue = bind_queue(broker, event_type.exchange)
    with transaction.atomic():
        huge = record_event(
            event_type,
            aggregate_id="o-1",
            payload={**make_payload("o-1"), "lines": [{"sku": "x" * 2000, "quantity": 1}]},
        )
    small = record(event_type, "o-2")

    relay_once()

    assert published_ids(broker, queue, 1) == [str(small.event_id)]
    assert_parked_at_once(huge, "too large")


def test_row_whose_properties_cannot_be_encoded_is_parked_at_once(event_type, broker):
    # Given a correlation id of 100 characters (the column's limit) but 300 bytes of UTF-8: too
    # long for the AMQP shortstr property it travels in (255 bytes)
    queue = bind_queue(broker, event_type.exchange)
    with transaction.atomic():
        unsendable = record_event(
            event_type, aggregate_id="o-1", payload=make_payload("o-1"), correlation_id="€" * 100
        )
    small = record(event_type, "o-2")

    # When the relay runs, it neither crashes nor retries the row: the same bytes fail every time
    relay_once()

    # Then the other row is published and the unsendable one is parked with the reason
    assert published_ids(broker, queue, 1) == [str(small.event_id)]
    assert_parked_at_once(unsendable, "cannot be encoded")


def test_row_whose_headers_do_not_fit_one_frame_is_parked_at_once(event_type, broker):
    # Given a row whose headers are far below OUTBOX_MAX_MESSAGE_BYTES but larger than a frame
    # (AMQP splits a body over frames, never a content header; RabbitMQ's frame_max is 128 KiB)
    queue = bind_queue(broker, event_type.exchange)
    with transaction.atomic():
        payload = make_payload("o-1")
        unsendable = record_event(
            event_type, aggregate_id="o-1", payload=payload, headers={"note": "x" * 200_000}
        )
    small = record(event_type, "o-2")

    # When the relay runs (sent, the row would make the broker close the whole connection, and
    # the relay would claim it first again after reconnecting, forever)
    relay_once()

    # Then the other row is published and the unsendable one is parked with the sizes
    assert published_ids(broker, queue, 1) == [str(small.event_id)]
    assert_parked_at_once(unsendable, f"frame_max ({broker.connection.frame_max})")


def row_with_properties_of(event_type, aggregate_id: str, size: int) -> OutboxMessage:
    """A row whose encoded AMQP properties are exactly ``size`` bytes (an extra header pads)."""
    with transaction.atomic():
        row = record_event(
            event_type, aggregate_id=aggregate_id, payload=make_payload(), headers={"note": ""}
        )
    row.headers["note"] = "x" * (size - len(encoded_properties(row)))
    row.save(update_fields=["headers"])
    assert len(encoded_properties(row)) == size
    return row


def test_header_frame_may_be_as_large_as_frame_max_and_no_larger(event_type, broker):
    # Given rows whose content header frame (8 bytes of frame, 12 of header, the properties)
    # is exactly frame_max, and one byte more: the protocol's limit (RabbitMQ tolerates 8 bytes
    # more, its FRAME_SIZE_FUDGE for old clients, and closes the connection beyond)
    frame_max = broker.connection.frame_max
    queue = bind_queue(broker, event_type.exchange)
    largest = row_with_properties_of(event_type, "o-1", frame_max - 20)
    too_large = row_with_properties_of(event_type, "o-2", frame_max - 19)
    publisher = Publisher(url=get_settings().broker_url, confirm_timeout=5, max_message_bytes=10**6)
    publisher.connect()
    try:
        result = publisher.publish([largest, too_large])
    finally:
        publisher.close()

    # Then the first is published intact, the second fails for good, the connection lives on
    assert result.connection_error is None
    assert [m.id for m in result.published] == [largest.id]
    assert [(f.message.id, f.terminal) for f in result.failed] == [(too_large.id, True)]
    received = get_messages(broker, queue, 1, timeout=2)
    assert received[0].properties["application_headers"]["note"] == largest.headers["note"]


def test_row_for_an_exchange_name_amqp_cannot_carry_is_parked_at_once(event_type, broker):
    # Given a row (imported, or older than the registry's check) whose exchange name is 129
    # characters but 256 bytes of UTF-8: too long for the shortstr it travels in
    queue = bind_queue(broker, event_type.exchange)
    unsendable = record(event_type, "o-1")
    OutboxMessage.objects.filter(id=unsendable.id).update(exchange="t." + "é" * 127)
    small = record(event_type, "o-2")

    # When the relay runs, it neither crashes (on every restart) nor retries the row
    relay_once()

    # Then the other row is published and the unsendable one is parked with the reason
    assert published_ids(broker, queue, 1) == [str(small.event_id)]
    assert_parked_at_once(unsendable, "cannot be encoded")


def test_broker_nack_is_a_failed_attempt(event_type, broker):
    # A full queue that rejects publishes makes RabbitMQ nack the message
    bind_queue(broker, event_type.exchange, **{"x-max-length": 0, "x-overflow": "reject-publish"})
    row = record(event_type, "o-1")

    relay_once()

    row.refresh_from_db()
    assert (row.state, row.attempts, row.last_error) == (
        OutboxMessage.State.PENDING,
        1,
        "nacked by the broker",
    )


def failing_aggregate(make_event_type, broker) -> tuple[str, list[OutboxMessage]]:
    """Aggregate "a" whose first event is unroutable and whose second is routable, and "b"."""
    exchange = unique("test.outbox")
    unroutable, routed = make_event_type(exchange=exchange), make_event_type(exchange=exchange)
    queue = bind_queue(broker, exchange, routed.type)
    return queue, [record(unroutable, "a"), record(routed, "a"), record(routed, "b")]


def test_later_events_of_a_failing_aggregate_wait_for_it(make_event_type, broker):
    # Given aggregate "a" whose first event is unroutable and whose second is routable
    queue, (first, second, other) = failing_aggregate(make_event_type, broker)

    # When the relay runs: "a"'s second event must not overtake its first; "b" is not held up
    relay_once()
    assert published_ids(broker, queue, 1) == [str(other.event_id)]
    second.refresh_from_db()
    assert (second.state, second.attempts) == (OutboxMessage.State.PENDING, 0)

    # Once the first is parked (an operator's decision point), the second goes out
    after_backoff()
    relay_once()
    first.refresh_from_db()
    assert first.state == OutboxMessage.State.PARKED
    assert published_ids(broker, queue, 1) == [str(second.event_id)]


def test_successor_claimed_in_a_later_batch_waits_for_a_failing_row_in_flight(
    make_event_type, broker
):
    # Given aggregate "a" whose first event is unroutable, and batches of one row, so that the
    # relay claims a#2 while a#1 is still waiting for its confirm
    queue, (first, second, other) = failing_aggregate(make_event_type, broker)

    # When the relay runs with several one-row batches in flight
    Relay(once=True, batch_size=1).run()

    # Then a#2 did not overtake a#1, and "b" was not held up
    assert published_ids(broker, queue, 1) == [str(other.event_id)]
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, first.attempts) == (OutboxMessage.State.PENDING, 1)
    assert (second.state, second.attempts) == (OutboxMessage.State.PENDING, 0)


def test_parked_row_is_published_after_retry_now(make_event_type, broker):
    exchange = unique("test.outbox")
    event_type = make_event_type(exchange=exchange)
    row = record(event_type, "o-1")
    relay_once()
    after_backoff()
    relay_once()
    row.refresh_from_db()
    assert row.state == OutboxMessage.State.PARKED

    # When the cause is fixed (a consumer binds) and an operator retries the row
    queue = bind_queue(broker, exchange)
    assert outbox_message_retry(message_ids=[row.id]) == 1
    relay_once()

    row.refresh_from_db()
    assert row.state == OutboxMessage.State.PUBLISHED
    assert [json.loads(m.body)["order_id"] for m in get_messages(broker, queue, 1)] == ["o-1"]
