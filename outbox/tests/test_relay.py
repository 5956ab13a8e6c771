"""The relay in-process against the real PostgreSQL and RabbitMQ: what reaches the broker."""

import json
import threading

import pytest
from django.db import connection, transaction

from outbox.models import OutboxMessage
from outbox.recording import record_event
from outbox.relay import Relay

from .helpers import bind_queue, get_messages, make_payload, sequences_by_subject

pytestmark = pytest.mark.django_db(transaction=True)


def relay_once(**kwargs) -> int:
    return Relay(once=True, **kwargs).run()


def test_committed_event_is_published_once_with_its_envelope(event_type, broker):
    # Given a consumer queue bound to the event type's exchange, and a committed event
    queue = bind_queue(broker, event_type.exchange)
    with transaction.atomic():
        recorded = record_event(
            event_type,
            aggregate_id="o-1",
            payload=make_payload("o-1"),
            correlation_id="corr-1",
            causation_id="cause-1",
            headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        )

    # When the relay drains the outbox
    published = relay_once()

    # Then exactly one message arrived, with the CloudEvents envelope in properties and headers
    assert published == 1
    messages = get_messages(broker, queue, 2, timeout=0.5)
    assert len(messages) == 1
    message = messages[0]
    assert json.loads(message.body) == make_payload("o-1")
    props = message.properties
    assert props["message_id"] == str(recorded.event_id)
    assert props["content_type"] == "application/json"
    assert props["delivery_mode"] == 2
    assert props["type"] == event_type.type
    assert props["correlation_id"] == "corr-1"
    headers = props["application_headers"]
    assert headers["ce-id"] == str(recorded.event_id)
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-source"] == "fitness.monolith"
    assert headers["ce-type"] == event_type.type
    assert headers["ce-subject"] == "o-1"
    assert headers["ce-dataversion"] == 1
    assert headers["ce-sequence"] == 1
    assert headers["ce-correlationid"] == "corr-1"
    assert headers["ce-causationid"] == "cause-1"
    assert headers["ce-time"].endswith("Z")
    assert headers["traceparent"] == headers["ce-traceparent"]
    assert message.delivery_info["routing_key"] == event_type.type
    recorded.refresh_from_db()
    assert recorded.state == OutboxMessage.State.PUBLISHED
    assert recorded.attempts == 1

    # And a second run publishes nothing more
    assert relay_once() == 0
    assert get_messages(broker, queue, 1, timeout=0.3) == []


def test_rolled_back_event_is_never_published(event_type, broker):
    queue = bind_queue(broker, event_type.exchange)
    with pytest.raises(RuntimeError), transaction.atomic():
        record_event(event_type, aggregate_id="o-1", payload=make_payload())
        raise RuntimeError("payment failed, the order is not placed")

    assert relay_once() == 0
    assert not OutboxMessage.objects.exists()
    assert get_messages(broker, queue, 1, timeout=0.3) == []


def test_a_row_committed_after_a_later_id_is_not_skipped(make_event_type, broker):
    # Given transaction A records first (smaller id) but commits after transaction B
    event_type = make_event_type()
    queue = bind_queue(broker, event_type.exchange)
    a_recorded, a_may_commit = threading.Event(), threading.Event()

    def transaction_a() -> None:
        try:
            with transaction.atomic():
                record_event(event_type, aggregate_id="a", payload=make_payload("a"))
                a_recorded.set()
                a_may_commit.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=transaction_a)
    thread.start()
    assert a_recorded.wait(10)
    with transaction.atomic():
        b = record_event(event_type, aggregate_id="b", payload=make_payload("b"))

    # When the relay runs between the two commits, and again after A committed
    assert relay_once() == 1
    a_may_commit.set()
    thread.join(10)
    assert relay_once() == 1

    # Then both were published: A's smaller id was not passed over
    a = OutboxMessage.objects.get(aggregate_id="a")
    assert a.id < b.id
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()
    bodies = [json.loads(m.body)["order_id"] for m in get_messages(broker, queue, 2)]
    assert bodies == ["b", "a"]


def test_many_events_keep_their_order_per_aggregate(event_type, broker):
    queue = bind_queue(broker, event_type.exchange)
    with transaction.atomic():
        for n in range(60):
            record_event(event_type, aggregate_id=f"o-{n % 7}", payload=make_payload(str(n)))

    # A small batch size forces several batches, each with several events per aggregate
    assert relay_once(batch_size=16) == 60

    sequences = sequences_by_subject(get_messages(broker, queue, 60))
    assert sum(len(s) for s in sequences.values()) == 60
    for subject, seen in sequences.items():
        assert seen == list(range(1, len(seen) + 1)), subject


def test_several_batches_in_flight_publish_every_row_once_in_order(event_type, broker, settings):
    # Given many more rows than one batch, some aggregates with many events, others with one
    settings.OUTBOX_MAX_IN_FLIGHT = 200
    queue = bind_queue(broker, event_type.exchange)
    with transaction.atomic():
        for n in range(300):
            aggregate = f"busy-{n % 5}" if n % 2 else f"single-{n}"
            record_event(event_type, aggregate_id=aggregate, payload=make_payload(str(n)))

    # When the relay claims batch after batch while earlier ones wait for their confirms
    assert relay_once(batch_size=20) == 300

    # Then each row went out exactly once (a claim never brought a row in flight again)
    messages = get_messages(broker, queue, 300)
    assert get_messages(broker, queue, 1, timeout=0.3) == []
    ids = [m.properties["message_id"] for m in messages]
    assert len(ids) == len(set(ids)) == 300
    # And each aggregate's events in sequence order
    for subject, seen in sequences_by_subject(messages).items():
        assert seen == list(range(1, len(seen) + 1)), subject
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()


@pytest.mark.parametrize(
    ("aggregates", "whole_batch_next"),
    [(["hot", "hot", "hot"], False), (["hot", "other-1", "other-2"], True)],
    ids=["only the refilled aggregate's rows", "other aggregates' rows too"],
)
def test_a_full_refill_with_other_aggregates_rows_makes_the_next_claim_a_whole_batch(
    event_type, aggregates, whole_batch_next
):
    # Given a relay with an aggregate waiting for a refill (it fell below the claim stop), no
    # whole batch due as far as it knows, and rows due
    with transaction.atomic():
        for n, aggregate in enumerate(aggregates):
            record_event(event_type, aggregate_id=aggregate, payload=make_payload(str(n)))
    relay = Relay(once=True, partitions=list(range(16)))
    relay.leases.held = list(range(16))
    relay.pipeline._refill.add(("order", "hot"))
    relay._more_due = False

    # When a refill claim comes back full
    relay._refill(3)

    # Then it took the rows, and only rows of other aggregates say more may be due (the relay
    # reads no NOTIFY while refilling): a whole batch next, not another refill of a few rows
    assert len(relay.pipeline) == 3
    assert relay._more_due is whole_batch_next


def test_a_burst_of_one_aggregate_does_not_hold_up_the_others(event_type, broker, settings):
    # Given a burst of one aggregate, more rows than the relay holds in memory, committed
    # before another aggregate's row
    settings.OUTBOX_MAX_IN_FLIGHT = 200
    queue = bind_queue(broker, event_type.exchange)
    with transaction.atomic():
        for n in range(400):
            record_event(event_type, aggregate_id="hot", payload=make_payload(f"hot-{n}"))
    with transaction.atomic():
        cold = record_event(event_type, aggregate_id="cold", payload=make_payload("cold"))

    # When the relay drains them (the burst goes out one row per confirm: order)
    assert relay_once(batch_size=50) == 401

    # Then the other aggregate's row went out among the first, not behind the burst's rows in
    # memory (when the burst could fill the memory, it came after some 250 of them)
    messages = get_messages(broker, queue, 401)
    ids = [m.properties["message_id"] for m in messages]
    assert ids.index(str(cold.event_id)) < 10
    # And every row went out once, the burst in its order, none left behind
    assert len(ids) == len(set(ids)) == 401
    assert sequences_by_subject(messages)["hot"] == list(range(1, 401))
    assert get_messages(broker, queue, 1, timeout=0.3) == []
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()
