"""Dead letters end to end on the real RabbitMQ and PostgreSQL: collect, requeue, discard, admin."""

import uuid
from datetime import timedelta
from io import StringIO

import amqp
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from outbox.consumer.dead_letters import REQUEUED_FROM_HEADER, collect, discard, requeue
from outbox.consumer.models import DeadLetter, InboxEntry
from outbox.consumer.tests.conftest import consumer_db, run_worker
from outbox.consumer.tests.process import BUG_FLAG_ENV
from outbox.consumer.tests.support import (
    bed_worker,
    broker_connection,
    event_message,
    get_all,
    publish,
    queue_depth,
)
from outbox.exceptions import PermanentError
from outbox.models import OutboxMessage
from outbox.tests.helpers import wait_for

pytestmark = consumer_db  # real commits: worker processes, broker round trips
# The admin needs the auth and session tables too: those tests flush every table.
admin_db = pytest.mark.django_db(transaction=True)
State = DeadLetter.State
CHANGELIST = "admin:outbox_consumer_deadletter_changelist"


def publish_event(bed, message):
    publish(message, exchange=bed.exchange, routing_key=message.properties["type"])


def effects(bed) -> int:
    """Outgoing events the handler committed: one per event it applied."""
    return OutboxMessage.objects.filter(type=bed.charged.type).count()


def inbox(bed) -> int:
    return InboxEntry.objects.filter(service=bed.service.name).count()


def fail_permanently(event, call):
    raise PermanentError("order total does not match its lines")


def dead_letters_of(bed):
    return DeadLetter.objects.filter(service=bed.service.name).order_by("id")


def kill_first_events(bed, count: int, **kwargs) -> list[str]:
    """Publish ``count`` events that the handler refuses; run the worker; return their ids."""
    messages = [
        event_message(bed.placed, subject=f"o-{n}", sequence=1, **kwargs) for n in range(count)
    ]
    for message in messages:
        publish_event(bed, message)
    bed.behaviour = fail_permanently
    stats = run_worker(bed)
    assert stats["dead"] == count
    return [message.properties["message_id"] for message in messages]


# --- the acceptance scenario, with a real worker process --------------------------------------


def test_a_handler_bug_dead_letters_events_and_after_the_fix_requeue_applies_each_once(
    make_bed, tmp_path
):
    # given a worker process whose handler has a bug (it fails while a flag file exists)
    bed = make_bed()
    flag = tmp_path / "bug"
    flag.touch()
    worker = bed_worker(
        tmp_path,
        bed,
        "command",
        **{
            BUG_FLAG_ENV: str(flag),
            "OUTBOX_CONSUMER_RETRY_BASE": "0.02",
            "OUTBOX_CONSUMER_RETRY_MAX": "0.1",
        },
    )
    try:
        worker.wait_for_log("consuming")
        events = [event_message(bed.placed, subject=f"o-{n}") for n in range(5)]
        for message in events:
            publish_event(bed, message)
        # when the retries are exhausted, the events are dead-lettered, and collected
        wait_for(lambda: queue_depth(bed.service.dead_letter_queue) == 5, 30, "5 dead letters")
        out = StringIO()
        call_command("collect_dead_letters", "--service", bed.service.name, stdout=out)
        assert "5 taken" in out.getvalue() and "5 new" in out.getvalue()
        rows = list(dead_letters_of(bed))
        assert {str(row.event_id) for row in rows} == {m.properties["message_id"] for m in events}
        for row in rows:
            assert row.state == State.OPEN
            assert row.origin == DeadLetter.Origin.CONSUMER
            assert row.attempts == 4  # 1 + max_retries (3)
            assert row.reason.startswith("gave up after 4 attempts: RuntimeError: handler bug")
            assert row.event_type == bed.placed.type and row.subject.startswith("o-")
            assert row.correlation_id and row.payload["total"] == "10.00"
        assert inbox(bed) == 0 and effects(bed) == 0  # nothing applied, nothing half-applied
        # and after the fix, everything is requeued
        flag.unlink()
        out = StringIO()
        call_command(
            "dead_letters", "requeue", "--service", bed.service.name, "--all", "--by", "ops:ann",
            stdout=out,
        )  # fmt: skip
        assert "requeued 5, skipped 0" in out.getvalue()
        # then each event is applied exactly once
        wait_for(lambda: inbox(bed) == 5, 30, "5 inbox entries")
        worker.wait_for_log("handled")
        assert effects(bed) == 5
        for message in events:
            caused = OutboxMessage.objects.filter(causation_id=message.properties["message_id"])
            assert caused.count() == 1
        assert queue_depth(bed.service.dead_letter_queue) == 0
        assert set(dead_letters_of(bed).values_list("state", "resolved_by")) == {
            (State.REQUEUED, "ops:ann")
        }
        # and requeueing again changes nothing (nothing is open any more)
        call_command("dead_letters", "requeue", "--service", bed.service.name, "--all")
    finally:
        worker.stop()
    assert inbox(bed) == 5 and effects(bed) == 5


# --- collecting ------------------------------------------------------------------------------


def test_collect_moves_messages_and_the_same_copy_twice_is_one_row(bed):
    # given one dead-lettered event whose dead copy is in <service>.dead twice (a redelivery)
    (event_id,) = kill_first_events(bed, 1)
    (dead,) = get_all(bed.service.dead_letter_queue)
    for _ in range(2):
        publish(dead, exchange="", routing_key=bed.service.dead_letter_queue)
    # when it is collected
    result = collect(bed.service)
    # then one row, the queue is empty, and the reason and attempts are the consumer's
    assert (result.taken, result.stored, result.duplicates) == (2, 1, 1)
    (row,) = dead_letters_of(bed)
    assert str(row.event_id) == event_id
    assert row.reason == "order total does not match its lines"
    assert row.attempts == 1
    assert row.headers["x-dead-service"] == bed.service.name
    assert row.headers["ce-id"] == event_id
    assert row.properties["message_id"] == event_id
    assert queue_depth(bed.service.dead_letter_queue) == 0
    # and collecting again finds nothing
    assert collect(bed.service).taken == 0


def test_an_unreadable_message_is_kept_with_its_body(bed):
    # given a delivery with a malformed body and no event id
    message = event_message(bed.placed)
    message.body = b'{"order_id": '
    del message.properties["message_id"]
    del message.properties["application_headers"]["ce-id"]
    publish(message, exchange="", routing_key=bed.service.queue_name)
    run_worker(bed)
    # when collected, then it is there with its reason and raw body
    collect(bed.service)
    (row,) = dead_letters_of(bed)
    assert row.event_id is None and row.payload is None
    assert bytes(row.body) == b'{"order_id": '
    assert "missing envelope field(s): ce-id" in row.reason


def test_a_message_postgresql_cannot_store_as_is_does_not_block_the_queue(bed):
    # given a dead copy with NUL characters (refused by PostgreSQL text/jsonb), then a normal one
    odd = amqp.Message(
        b'{"note": "a\\u0000b"}',
        application_headers={"x-death-reason": "bad\x00header", "ce-subject": "o\x00"},
    )
    publish(odd, exchange="", routing_key=bed.service.dead_letter_queue)
    kill_first_events(bed, 1)
    # when collected, then both are stored, NULs replaced
    assert collect(bed.service).stored == 2
    odd_row = dead_letters_of(bed).get(event_id__isnull=True)
    assert odd_row.reason == "bad\ufffdheader" and odd_row.subject == "o\ufffd"
    assert odd_row.payload == {"note": "a\ufffdb"}


def test_broker_dead_letters_after_the_delivery_limit_are_collected_and_requeued(make_bed):
    # given a message the broker dead-lettered itself: delivered 3 times, never acknowledged
    bed = make_bed(delivery_limit=2)
    message = event_message(bed.placed)
    publish_event(bed, message)
    conn = broker_connection()
    try:
        channel = conn.channel()
        for _ in range(10):
            delivery = channel.basic_get(bed.service.queue_name)
            if delivery is None:
                break
            channel.basic_reject(delivery.delivery_tag, requeue=True)
    finally:
        conn.close()
    wait_for(lambda: queue_depth(bed.service.dead_letter_queue) == 1, 10, "broker dead letter")
    # when collected
    collect(bed.service)
    (row,) = dead_letters_of(bed)
    # then the broker's x-death is read into a reason and the attempts
    assert row.origin == DeadLetter.Origin.BROKER
    assert row.reason.startswith("delivery_limit: delivered more than 2 times")
    assert bed.service.queue_name in row.reason
    assert row.attempts == 3
    assert row.headers["x-death"][0]["reason"] == "delivery_limit"
    # and a requeue sends it back without the broker's bookkeeping, and it is handled
    assert requeue([row.id], by="test").done == [row.id]
    stats = run_worker(bed)
    assert stats["handled"] == 1
    (call,) = bed.calls
    assert str(call.id) == message.properties["message_id"]
    assert not any(key.startswith(("x-death", "x-first-death")) for key in call.headers)
    assert call.headers[REQUEUED_FROM_HEADER] == f"dead-letter:{row.id}"


def test_the_same_event_dying_again_after_a_requeue_is_a_new_dead_letter(bed):
    # given an event dead-lettered, collected and requeued before the bug is fixed
    (event_id,) = kill_first_events(bed, 1)
    collect(bed.service)
    (first,) = dead_letters_of(bed)
    requeue([first.id], by="test")
    # when it dies again
    assert run_worker(bed)["dead"] == 1
    collect(bed.service)
    # then a second row, open, next to the requeued one
    first_again, second = dead_letters_of(bed)
    assert (first_again.state, second.state) == (State.REQUEUED, State.OPEN)
    assert str(second.event_id) == event_id
    assert second.headers[REQUEUED_FROM_HEADER] == f"dead-letter:{first.id}"
    # and after the fix the second requeue applies it once
    bed.behaviour = None
    assert requeue([second.id], by="test").done == [second.id]
    assert run_worker(bed)["handled"] == 1
    assert inbox(bed) == 1 and effects(bed) == 1


def test_two_copies_of_one_failure_make_one_open_row(bed):
    # given two dead copies of the same event (e.g. the producer published it twice)
    message = event_message(bed.placed)
    publish_event(bed, message)
    publish_event(bed, message)
    bed.behaviour = fail_permanently
    assert run_worker(bed)["dead"] == 2
    # when collected, then one open row: one thing to fix
    result = collect(bed.service)
    assert (result.stored, result.duplicates) == (1, 1)


# --- requeue and discard -----------------------------------------------------------------------


def test_discard_records_who_why_and_when_and_the_event_is_never_processed(bed):
    # given two dead letters
    kill_first_events(bed, 2)
    collect(bed.service)
    keep, drop = dead_letters_of(bed)
    bed.behaviour = None
    # when one is discarded from the command line
    out = StringIO()
    call_command(
        "dead_letters", "discard", "--service", bed.service.name, "--id", str(drop.id),
        "--reason", "duplicate order, refunded by hand", "--by", "ops:bob", stdout=out,
    )  # fmt: skip
    # then who, why and when are recorded
    drop.refresh_from_db()
    assert drop.state == State.DISCARDED
    assert (drop.resolved_by, drop.resolution_note) == (
        "ops:bob",
        "duplicate order, refunded by hand",
    )
    assert timezone.now() - drop.resolved_at < timedelta(minutes=1)
    assert "discarded 1" in out.getvalue()
    # and it can no longer be requeued, so it is never processed; the other one still can
    result = requeue([drop.id, keep.id], by="test")
    assert result.done == [keep.id]
    assert result.skipped == {drop.id: "already discarded"}
    assert run_worker(bed)["handled"] == 1
    assert list(InboxEntry.objects.values_list("event_id", flat=True)) == [keep.event_id]


def test_discard_needs_a_reason(bed):
    kill_first_events(bed, 1)
    collect(bed.service)
    (row,) = dead_letters_of(bed)
    with pytest.raises(CommandError):
        call_command("dead_letters", "discard", "--service", bed.service.name, "--all")
    with pytest.raises(Exception, match="a reason is required"):
        discard([row.id], by="test", reason="  ")
    row.refresh_from_db()
    assert row.state == State.OPEN


def test_requeue_all_of_one_type_leaves_the_others(bed):
    # given a dead letter of the handled type and one of a type without a handler
    (placed_id,) = kill_first_events(bed, 1)
    publish(event_message(bed.charged), exchange="", routing_key=bed.service.queue_name)
    run_worker(bed)
    # when every dead letter of the handled type is requeued (collecting what is left first)
    bed.behaviour = None
    call_command(
        "dead_letters", "requeue", "--service", bed.service.name, "--all", "--type",
        bed.placed.type, stdout=StringIO(),
    )  # fmt: skip
    # then only that one was requeued and handled
    states = dict(dead_letters_of(bed).values_list("event_type", "state"))
    assert states == {bed.placed.type: State.REQUEUED, bed.charged.type: State.OPEN}
    assert run_worker(bed)["handled"] == 1
    assert [str(i) for i in InboxEntry.objects.values_list("event_id", flat=True)] == [placed_id]


def test_requeue_refuses_an_event_older_than_the_inbox_retention_unless_forced(bed, settings):
    # given a dead letter of an event that happened before the inbox's retention window
    settings.OUTBOX_RETENTION_DAYS = 30
    settings.OUTBOX_INBOX_RETENTION_DAYS = 37
    kill_first_events(bed, 1)
    collect(bed.service)
    (row,) = dead_letters_of(bed)
    DeadLetter.objects.filter(id=row.id).update(occurred_at=timezone.now() - timedelta(days=40))
    # when requeued, then it is refused: its inbox entry may be gone, it could apply twice
    result = requeue([row.id], by="test")
    assert result.done == [] and "older than the inbox retention" in result.skipped[row.id]
    # and --force requeues it anyway
    assert requeue([row.id], by="test", force=True).done == [row.id]


def test_ids_of_another_service_are_refused(make_bed):
    one, other = make_bed(), make_bed()
    kill_first_events(other, 1)
    collect(other.service)
    (row,) = dead_letters_of(other)
    with pytest.raises(CommandError, match="do not belong to"):
        call_command("dead_letters", "requeue", "--service", one.service.name, "--id", str(row.id))


def test_list_shows_the_event_the_reason_and_the_attempts(bed):
    (event_id,) = kill_first_events(bed, 1)
    collect(bed.service)
    out = StringIO()
    call_command("dead_letters", "list", "--service", bed.service.name, stdout=out)
    text = out.getvalue()
    assert event_id in text and bed.placed.type in text
    assert "attempts=1" in text and "order total does not match its lines" in text
    assert "1 dead letter(s) shown" in text


# --- the admin -------------------------------------------------------------------------------


@admin_db
def test_admin_changelist_shows_dead_letters_per_service_with_reason_and_attempts(
    make_bed, superuser_client
):
    # given dead letters of two services
    one, other = make_bed(), make_bed()
    (event_id,) = kill_first_events(one, 1)
    kill_first_events(other, 2)
    collect(one.service)
    collect(other.service)
    # when an operator opens the changelist, filtered by service
    response = superuser_client.get(reverse(CHANGELIST), {"service": one.service.name})
    # then that service's dead letter is there with its event, reason and attempts
    assert response.status_code == 200
    (row,) = response.context["cl"].result_list
    assert str(row.event_id) == event_id
    html = response.content.decode()
    assert "order total does not match its lines" in html
    assert one.placed.type in html
    assert f"{other.service.name}: 2" in html  # open counts per service
    # and the event id finds it
    found = superuser_client.get(reverse(CHANGELIST), {"q": event_id})
    assert [str(r.event_id) for r in found.context["cl"].result_list] == [event_id]
    # and the detail page shows the payload and the headers, read-only
    detail = superuser_client.get(reverse("admin:outbox_consumer_deadletter_change", args=[row.id]))
    assert detail.status_code == 200
    assert "&quot;total&quot;: &quot;10.00&quot;" in detail.content.decode()
    assert 'name="reason"' not in detail.content.decode()


@admin_db
def test_admin_collect_requeue_and_discard(bed, superuser_client):
    # given two events in <service>.dead, not collected yet
    first, second = kill_first_events(bed, 2)
    bed.behaviour = None
    # when the operator presses "collect now"
    response = superuser_client.post(
        reverse("admin:outbox_consumer_deadletter_collect"), follow=True
    )
    assert "2 new dead letter(s)" in response.content.decode()
    by_event = {str(row.event_id): row for row in dead_letters_of(bed)}
    # and requeues one
    response = superuser_client.post(
        reverse(CHANGELIST),
        {"action": "requeue_selected", "_selected_action": [by_event[first].id]},
        follow=True,
    )
    assert "1 dead letter(s) requeued" in response.content.decode()
    # and discards the other: first a page asking why, then the discard
    ask = superuser_client.post(
        reverse(CHANGELIST),
        {"action": "discard_selected", "_selected_action": [by_event[second].id]},
    )
    assert ask.status_code == 200 and "Discard dead letters" in ask.content.decode()
    done = superuser_client.post(
        reverse(CHANGELIST),
        {
            "action": "discard_selected",
            "_selected_action": [by_event[second].id],
            "reason": "test order",
            "apply": "1",
        },
        follow=True,
    )
    assert "1 dead letter(s) discarded" in done.content.decode()
    # then the requeued event is handled, the discarded one is not
    assert run_worker(bed)["handled"] == 1
    assert [str(i) for i in InboxEntry.objects.values_list("event_id", flat=True)] == [first]
    discarded = DeadLetter.objects.get(event_id=uuid.UUID(second))
    assert (discarded.state, discarded.resolved_by, discarded.resolution_note) == (
        State.DISCARDED,
        "admin:ops",
        "test order",
    )
    requeued = DeadLetter.objects.get(event_id=uuid.UUID(first))
    assert (requeued.state, requeued.resolved_by) == (State.REQUEUED, "admin:ops")
