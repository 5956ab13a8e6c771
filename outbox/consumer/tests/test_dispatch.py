"""The dispatcher against the real RabbitMQ and PostgreSQL: effect once, retries, dead letters."""

import json
import time

import pytest
from django.db import transaction

from outbox.consumer.models import AppliedSequence, InboxEntry
from outbox.consumer.tests.conftest import consumer_db, run_worker
from outbox.consumer.tests.support import event_message, get_all, publish, queue_depth
from outbox.exceptions import PermanentError, RetryLater
from outbox.models import OutboxMessage
from outbox.recording import record_event
from outbox.relay import Relay

pytestmark = consumer_db


def publish_event(bed, message):
    publish(message, exchange=bed.exchange, routing_key=message.properties["type"])


def publish_to_queue(bed, message):
    """Straight into the service's queue (for types the queue has no binding for)."""
    publish(message, exchange="", routing_key=bed.service.queue_name)


def outgoing(bed):
    return OutboxMessage.objects.filter(type=bed.charged.type)


def test_handled_once_with_inbox_row_and_outgoing_event(bed):
    # given an order-placed event on the producer's exchange
    message = event_message(bed.placed, subject="o-7", sequence=3)
    publish_event(bed, message)
    # when the worker runs
    stats = run_worker(bed)
    # then the handler ran once, and inbox + outgoing event were committed together
    assert stats["handled"] == 1
    event_id = message.properties["message_id"]
    (call,) = bed.calls
    assert str(call.id) == event_id
    assert (call.subject, call.sequence, call.version) == ("o-7", 3, 1)
    assert call.payload == {"order_id": "o-7", "total": "10.00"}
    entry = InboxEntry.objects.get(service=bed.service.name)
    assert str(entry.event_id) == event_id
    assert entry.handled_at >= entry.received_at
    (out,) = outgoing(bed)
    assert out.causation_id == event_id
    assert out.correlation_id == call.correlation_id
    assert AppliedSequence.objects.get(service=bed.service.name, subject="o-7").last_sequence == 3
    # and the delivery was acknowledged
    assert queue_depth(bed.service.queue_name) == 0


def test_duplicate_message_id_is_handled_once(bed):
    # given the same event published twice (same message id)
    message = event_message(bed.placed)
    publish_event(bed, message)
    publish_event(bed, message)
    # when the worker runs
    stats = run_worker(bed)
    # then it was handled once and the duplicate acknowledged and ignored
    assert (stats["handled"], stats["duplicate"]) == (1, 1)
    assert len(bed.calls) == 1
    assert outgoing(bed).count() == 1
    assert queue_depth(bed.service.queue_name) == 0


def test_handler_failure_rolls_back_effect_and_inbox_then_retry_succeeds(bed):
    # given a handler that fails after recording its outgoing event, the first time only
    def fail_once(event, call):
        if call == 1:
            assert outgoing(bed).count() == 1  # written, not committed yet
            raise ValueError("boom")
        assert outgoing(bed).count() == 1  # the first attempt left nothing behind

    bed.behaviour = fail_once
    publish_event(bed, event_message(bed.placed))
    # when the worker runs
    stats = run_worker(bed)
    # then the failed attempt left no partial effect and the retry applied it once
    assert (stats["retried"], stats["handled"]) == (1, 1)
    assert outgoing(bed).count() == 1
    assert InboxEntry.objects.get(service=bed.service.name).attempts == 2


def test_retry_later_backs_off_then_succeeds(bed):
    # given a handler whose precondition is missing for the first two deliveries
    seen: list[float] = []

    def not_yet(event, call):
        seen.append(time.monotonic())
        if call <= 2:
            raise RetryLater("predecessor not applied yet")

    bed.behaviour = not_yet
    publish_event(bed, event_message(bed.placed))
    # when the worker runs
    stats = run_worker(bed)
    # then it was retried twice, with growing delays (base 0.05 s: >= 25 ms then >= 50 ms)
    assert (stats["retried"], stats["handled"]) == (2, 1)
    assert seen[1] - seen[0] >= 0.025
    assert seen[2] - seen[1] >= 0.05
    assert len(bed.calls) == 3
    assert outgoing(bed).count() == 1
    assert bed.calls[-1].headers["x-retry-count"] == 2
    for queue in bed.service.retry_queues:
        assert queue_depth(queue) == 0


def test_exceeding_max_retries_dead_letters_with_reason(make_bed):
    # given a service with 2 retries and a handler that never gets its precondition
    bed = make_bed(max_retries=2)

    def never(event, call):
        raise RetryLater("payment service unavailable")

    bed.behaviour = never
    message = event_message(bed.placed)
    publish_event(bed, message)
    # when the worker runs
    stats = run_worker(bed)
    # then after 3 attempts the event is in the dead-letter queue with the reason
    assert (stats["retried"], stats["dead"]) == (2, 1)
    (dead,) = get_all(bed.service.dead_letter_queue)
    headers = dead.properties["application_headers"]
    assert "gave up after 3 attempts" in headers["x-death-reason"]
    assert "payment service unavailable" in headers["x-death-reason"]
    assert headers["x-attempts"] == 3
    assert headers["ce-id"] == message.properties["message_id"]  # original headers kept
    assert headers["x-original-exchange"] == bed.exchange
    assert dead.properties["message_id"] == message.properties["message_id"]
    assert json.loads(dead.body) == {"order_id": "o-1", "total": "10.00"}
    # and nothing was applied
    assert outgoing(bed).count() == 0
    assert not InboxEntry.objects.filter(service=bed.service.name).exists()


def test_permanent_error_dead_letters_at_once_and_rolls_back(bed):
    # given a handler that finds the event can never be applied
    def refuse(event, call):
        raise PermanentError("order total does not match its lines")

    bed.behaviour = refuse
    publish_event(bed, event_message(bed.placed))
    # when the worker runs
    stats = run_worker(bed)
    # then no retry: straight to the dead letters, and no effect
    assert (stats["retried"], stats["dead"]) == (0, 1)
    (dead,) = get_all(bed.service.dead_letter_queue)
    headers = dead.properties["application_headers"]
    assert headers["x-death-reason"] == "order total does not match its lines"
    assert headers["x-attempts"] == 1
    assert outgoing(bed).count() == 0


def _malformed_json(bed):
    message = event_message(bed.placed)
    message.body = b'{"order_id": "o-1", "total": '
    return message


def _deeply_nested_json(bed):
    # valid JSON that Python's parser gives up on (RecursionError, not a ValueError)
    message = event_message(bed.placed)
    message.body = b'{"order_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    return message


def _missing_id(bed):
    message = event_message(bed.placed)
    del message.properties["application_headers"]["ce-id"]
    del message.properties["message_id"]
    return message


def _unknown_type(bed):
    message = event_message(bed.charged)  # registered, but the service has no handler for it
    return message


def _unknown_version(bed):
    return event_message(bed.placed, version=2)


def _schema_failure(bed):
    return event_message(bed.placed, payload={"order_id": "o-1", "total": "ten"})


@pytest.mark.parametrize(
    ("make_message", "reason"),
    [
        (_malformed_json, "malformed JSON body"),
        (_deeply_nested_json, "malformed JSON body"),
        (_missing_id, "missing envelope field(s): ce-id"),
        (_unknown_type, "no handler for event type"),
        (_unknown_version, "unsupported version 2 of"),
        (_schema_failure, "payload fails the schema of"),
    ],
    ids=[
        "malformed-json",
        "deeply-nested-json",
        "missing-id",
        "unknown-type",
        "unknown-version",
        "schema-failure",
    ],
)
def test_terminal_failures_go_to_dead_letters_at_once_and_the_next_event_flows(
    bed, make_message, reason
):
    # given a bad delivery followed by a good one
    publish_to_queue(bed, make_message(bed))
    good = event_message(bed.placed, subject="o-2")
    publish_event(bed, good)
    # when the worker runs
    stats = run_worker(bed)
    # then the bad one is dead-lettered with its reason, without retries
    assert (stats["dead"], stats["retried"], stats["handled"]) == (1, 0, 1)
    (dead,) = get_all(bed.service.dead_letter_queue)
    assert reason in dead.properties["application_headers"]["x-death-reason"]
    assert dead.properties["application_headers"]["x-attempts"] == 1
    # and the good one was handled
    assert [str(call.id) for call in bed.calls] == [good.properties["message_id"]]
    assert queue_depth(bed.service.queue_name) == 0


def test_older_event_after_a_newer_one_is_counted_as_superseded(bed):
    # given events 5 then 3 of one aggregate (3 arrives late)
    publish_event(bed, event_message(bed.placed, subject="o-9", sequence=5))
    publish_event(bed, event_message(bed.placed, subject="o-9", sequence=3))
    # when the worker runs
    stats = run_worker(bed)
    # then both are delivered to the handler (gaps and lateness are the handler's call), the
    # late one is flagged, and the high-water mark stays at 5
    assert (stats["handled"], stats["superseded"]) == (2, 1)
    mark = AppliedSequence.objects.get(service=bed.service.name, subject="o-9")
    assert mark.last_sequence == 5


def test_events_recorded_and_relayed_by_the_outbox_are_consumed(bed):
    # given an event recorded in a producer's transaction and published by the real relay
    with transaction.atomic():
        recorded = record_event(
            bed.placed, aggregate_id="o-42", payload={"order_id": "o-42", "total": "99.00"}
        )
    assert Relay(once=True).run() == 1
    # when the worker runs
    stats = run_worker(bed)
    # then the envelope read off the wire is the one recorded
    assert stats["handled"] == 1
    (call,) = bed.calls
    assert call.id == recorded.event_id
    assert (call.type, call.version, call.source) == (bed.placed.type, 1, recorded.source)
    assert (call.subject, call.sequence) == ("o-42", recorded.sequence)
    assert call.correlation_id == recorded.correlation_id == str(recorded.event_id)
    assert call.causation_id is None
    assert call.time == recorded.occurred_at
    assert call.aggregate_type == "order"
    # and the reaction continues the saga: same correlation, caused by the consumed event
    (reaction,) = outgoing(bed)
    assert reaction.correlation_id == recorded.correlation_id
    assert reaction.causation_id == str(recorded.event_id)


def test_an_event_ahead_of_its_predecessor_waits_for_it(bed):
    # given a handler that needs the aggregate's previous event applied first (its own state)
    def needs_predecessor(event, call):
        applied = outgoing(bed).filter(aggregate_id=event.subject).count()
        if event.sequence > 1 and applied < event.sequence:
            raise RetryLater(f"sequence {event.sequence - 1} of {event.subject} not applied")

    bed.behaviour = needs_predecessor
    # when the events of one aggregate arrive as 2, 1 (and another aggregate's in between)
    publish_event(bed, event_message(bed.placed, subject="o-5", sequence=2))
    publish_event(bed, event_message(bed.placed, subject="o-6", sequence=1))
    publish_event(bed, event_message(bed.placed, subject="o-5", sequence=1))
    stats = run_worker(bed)
    # then 2 was retried until 1 was applied: applied order 1, 2, and nothing blocked o-6
    assert stats["handled"] == 3
    assert stats["retried"] >= 1
    applied = [(c.subject, c.sequence) for c in bed.calls if c.headers.get("x-retry-count") is None]
    assert applied[:2] == [("o-5", 2), ("o-6", 1)]  # first attempts, in queue order
    o5 = list(InboxEntry.objects.filter(subject="o-5").order_by("handled_at"))
    assert [entry.sequence for entry in o5] == [1, 2]
