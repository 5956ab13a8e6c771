"""Dead letters whose content PostgreSQL cannot store as received: every one is collected and
kept, none blocks the messages behind it or another service's collection, and a requeue either
works or fails for that row alone. Real RabbitMQ and PostgreSQL; where PostgreSQL has to refuse a
row for a reason nobody foresaw, a trigger makes it refuse.
"""

import contextlib
import uuid
from collections.abc import Iterator
from io import StringIO

import amqp
import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from outbox.consumer.dead_letter_rows import INTEGER_MAX, REDUCED_REASON, json_safe
from outbox.consumer.dead_letters import collect, requeue
from outbox.consumer.models import DeadLetter
from outbox.consumer.tasks import collect_dead_letters_task
from outbox.consumer.tests.conftest import consumer_db, run_worker
from outbox.consumer.tests.support import event_message, get_all, publish, queue_depth
from outbox.exceptions import PermanentError

pytestmark = consumer_db
State = DeadLetter.State


def dead_letters_of(bed):
    return DeadLetter.objects.filter(service=bed.service.name).order_by("id")


def refuse_the_order(event, call):
    raise PermanentError("bad order")


def genuine_dead_letter(bed) -> str:
    """Publish an event the handler refuses; run the worker (it dead-letters what is queued)."""
    message = event_message(bed.placed, subject="o-good")
    publish(message, exchange=bed.exchange, routing_key=message.properties["type"])
    bed.behaviour = refuse_the_order
    return message.properties["message_id"]


def dead_copy(bed, body: bytes, headers: dict, **properties) -> amqp.Message:
    """A hand-made dead copy, published straight into ``<service>.dead``."""
    message = amqp.Message(
        body, message_id=str(uuid.uuid4()), application_headers=headers, **properties
    )
    publish(message, exchange="", routing_key=bed.service.dead_letter_queue)
    return message


@contextlib.contextmanager
def postgresql_refuses(condition: str, errcode: str) -> Iterator[None]:
    """PostgreSQL refuses every dead-letter row for which ``condition`` (SQL on ``NEW``) holds,
    with SQLSTATE ``errcode``: a stand-in for a value nobody foresaw, or a database in trouble."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            CREATE FUNCTION test_refuse_dead_letter() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF {condition} THEN
                    RAISE EXCEPTION 'refused by the test' USING ERRCODE = '{errcode}';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER test_refuse_dead_letter BEFORE INSERT ON outbox_consumer_dead_letter
                FOR EACH ROW EXECUTE FUNCTION test_refuse_dead_letter();
            """
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER IF EXISTS test_refuse_dead_letter ON outbox_consumer_dead_letter;"
                "DROP FUNCTION IF EXISTS test_refuse_dead_letter();"
            )


# --- values PostgreSQL refuses as they are: stored in a form it accepts -----------------------


@pytest.mark.parametrize("poison", ["nan_body", "huge_version", "huge_retry_count"])
def test_a_poison_dead_letter_is_stored_and_the_one_behind_it_is_collected_too(bed, poison):
    # given an altered delivery the worker dead-letters (bad signature or envelope) ...
    message = event_message(bed.placed, subject="o-poison")
    headers = message.properties["application_headers"]
    if poison == "nan_body":  # Python's json reads NaN, PostgreSQL's json refuses it
        message.body = b'{"order_id": "o-poison", "total": NaN}'
    elif poison == "huge_version":  # beyond the integer column
        headers["ce-dataversion"] = 3_000_000_000
    else:  # its attempts, 1 + retries, beyond the integer column
        headers["x-retry-count"] = 5_000_000_000
        headers["x-outbox-signature"] = "v1=" + "0" * 64
    publish(message, exchange=bed.exchange, routing_key=message.properties["type"])
    # ... and, behind it, a genuine event the handler refuses
    genuine = genuine_dead_letter(bed)
    assert run_worker(bed)["dead"] == 2
    # when the dead letters are collected
    result = collect(bed.service)
    # then both are stored in full, acknowledged, and the queue is empty
    assert (result.taken, result.stored, result.reduced, result.problem) == (2, 2, 0, "")
    assert queue_depth(bed.service.dead_letter_queue) == 0
    rows = {str(row.event_id): row for row in dead_letters_of(bed)}
    assert rows[genuine].reason == "bad order" and rows[genuine].payload["order_id"] == "o-good"
    row = rows[message.properties["message_id"]]
    assert bytes(row.body) == bytes(message.body)  # the body exactly as received
    assert row.reason.startswith("signature check failed")
    if poison == "nan_body":
        assert row.payload is None  # not JSON; no NaN pretending to be a number
    elif poison == "huge_version":
        assert row.version is None  # unknown to the column; the header keeps it
        assert row.headers["ce-dataversion"] == 3_000_000_000
    else:
        assert row.attempts == INTEGER_MAX  # clamped; the header keeps the count
        assert row.headers["x-retry-count"] == 5_000_000_000
        assert row.headers["x-attempts"] == 5_000_000_001
    # and a requeue sends the message as it was received, minus the retry bookkeeping
    assert requeue([row.id], by="test").done == [row.id]
    (again,) = get_all(bed.service.queue_name)
    assert bytes(again.body) == bytes(message.body)
    sent = again.properties["application_headers"]
    assert sent["ce-dataversion"] == headers["ce-dataversion"]
    assert "x-retry-count" not in sent and "x-attempts" not in sent


def test_lone_surrogates_and_numbers_beyond_a_double_are_stored_and_requeued(bed):
    # given a hand-made dead copy with text PostgreSQL refuses (py-amqp passes lone surrogates
    # through) and a number JSON allows but a double cannot hold
    odd = dead_copy(
        bed,
        b'{"total": 1e400, "note": "a\\ud800b"}',
        {"x-death-reason": "hand-made \ud800", "ce-subject": "o-\udc80"},
        type="odd-\udc80",
    )
    genuine = genuine_dead_letter(bed)
    run_worker(bed)
    # when collected
    result = collect(bed.service)
    # then both rows are stored in full, the refused characters replaced
    assert (result.stored, result.reduced, result.problem) == (2, 0, "")
    row = dead_letters_of(bed).get(event_id=odd.properties["message_id"])
    assert row.reason == "hand-made \ufffd" and row.subject == "o-\ufffd"
    assert row.event_type == "odd-\ufffd"
    assert row.payload == {"total": "1e400", "note": "a\ufffdb"}  # the producer's digits
    assert bytes(row.body) == bytes(odd.body)
    assert dead_letters_of(bed).get(event_id=genuine).reason == "bad order"
    # and a requeue sends the original body, the headers as stored
    assert requeue([row.id], by="test").done == [row.id]
    (again,) = get_all(bed.service.queue_name)
    assert bytes(again.body) == bytes(odd.body)
    assert again.properties["application_headers"]["ce-subject"] == "o-\ufffd"


def test_non_finite_floats_are_stored_as_their_names():
    # RabbitMQ refuses NaN and Infinity in headers; a body or another broker's client may not
    assert json_safe({"a": [float("nan"), float("inf"), -float("inf"), 1.5]}) == {
        "a": ["NaN", "Infinity", "-Infinity", 1.5]
    }


# --- a row PostgreSQL still refuses: stored reduced, never requeued ----------------------------


def test_a_row_postgresql_still_refuses_is_stored_reduced_and_only_that_row_is_not_requeued(bed):
    # given a dead copy PostgreSQL refuses as received, and a genuine dead letter behind it
    odd = dead_copy(bed, b'{"order_id": "o-odd"}', {"x-death-reason": "odd", "x-refuse": 1})
    genuine = genuine_dead_letter(bed)
    run_worker(bed)
    refused = "jsonb_typeof(NEW.headers) = 'object' AND NEW.headers ? 'x-refuse'"
    with postgresql_refuses(refused, errcode="22000"):  # data_exception, as DataError is
        # when collected
        result = collect(bed.service)
        # then both are stored, the odd one reduced: raw body, headers as text, what failed
        assert (result.taken, result.stored, result.reduced, result.problem) == (2, 2, 1, "")
        assert queue_depth(bed.service.dead_letter_queue) == 0
        reduced = dead_letters_of(bed).get(event_id=odd.properties["message_id"])
        assert reduced.reason.startswith(f"{REDUCED_REASON} (DataError: refused by the test)")
        assert reduced.reason.endswith("the reason it was dead-lettered: odd")
        assert bytes(reduced.body) == b'{"order_id": "o-odd"}' and reduced.payload is None
        assert isinstance(reduced.headers, str) and "'x-refuse': 1" in reduced.headers
        # and the same copy collected again (a crash before the ack) is a duplicate
        publish(odd, exchange="", routing_key=bed.service.dead_letter_queue)
        assert (collect(bed.service).duplicates, dead_letters_of(bed).count()) == (1, 2)
    # when every open dead letter is requeued
    out, err = StringIO(), StringIO()
    call_command(
        "dead_letters", "requeue", "--service", bed.service.name, "--all", stdout=out, stderr=err
    )
    # then the genuine one is, and the reduced one is left open, saying why
    assert "requeued 1, skipped 1" in out.getvalue()
    assert f"#{reduced.id} skipped: stored in reduced form" in err.getvalue()
    assert dead_letters_of(bed).get(event_id=genuine).state == State.REQUEUED
    reduced.refresh_from_db()
    assert reduced.state == State.OPEN


def test_a_message_not_storable_even_reduced_stays_in_the_queue_and_the_rest_is_collected(bed):
    # given a dead copy PostgreSQL refuses in any form, and a genuine dead letter behind it
    odd = dead_copy(bed, b"{}", {"x-death-reason": "odd"})
    genuine = genuine_dead_letter(bed)
    run_worker(bed)
    with postgresql_refuses(f"NEW.event_id = '{odd.properties['message_id']}'", errcode="P0001"):
        # when collected
        result = collect(bed.service)
        # then the genuine one is stored and acknowledged, the odd one never acknowledged
        assert (result.taken, result.stored, result.left) == (1, 1, 1)
        assert "could not be stored, even reduced" in result.problem
        assert "refused by the test" in result.problem
        assert [str(row.event_id) for row in dead_letters_of(bed)] == [genuine]
        assert queue_depth(bed.service.dead_letter_queue) == 1
    # and once PostgreSQL accepts it, the next run stores it
    assert collect(bed.service).stored == 1
    assert queue_depth(bed.service.dead_letter_queue) == 0


def test_a_stored_message_the_broker_client_cannot_send_fails_only_its_own_requeue(bed):
    # given a dead copy whose header name is not UTF-8 (stored as its text, too long to send)
    odd = dead_copy(bed, b"{}", {"x-death-reason": "odd", b"\xff" * 200: "x"})
    genuine = genuine_dead_letter(bed)
    run_worker(bed)
    collect(bed.service)
    odd_row = dead_letters_of(bed).get(event_id=odd.properties["message_id"])
    genuine_row = dead_letters_of(bed).get(event_id=genuine)
    # when both are requeued
    result = requeue([odd_row.id, genuine_row.id], by="test")
    # then the genuine one is, and the other is left open, saying why
    assert result.done == [genuine_row.id]
    assert "cannot be sent as it is" in result.skipped[odd_row.id]
    assert len(get_all(bed.service.queue_name)) == 1


# --- the periodic task -------------------------------------------------------------------------


def test_the_collect_task_goes_on_to_the_next_service_when_one_fails_and_then_reports_it(
    make_bed,
):
    # given two services with a dead letter each; PostgreSQL refuses the first one's rows
    first, second = sorted((make_bed(), make_bed()), key=lambda bed: bed.service.name)
    for bed in (first, second):
        genuine_dead_letter(bed)
        assert run_worker(bed)["dead"] == 1
    refused = postgresql_refuses(f"NEW.service = '{first.service.name}'", errcode="P0001")
    # when the beat task runs
    with refused, pytest.raises(RuntimeError) as failure:
        collect_dead_letters_task()
    # then the second service was collected all the same, and the first one reported
    assert dead_letters_of(second).count() == 1
    assert queue_depth(second.service.dead_letter_queue) == 0
    assert f"{first.service.name}: 1 message(s) could not be stored" in str(failure.value)
    assert second.service.name not in str(failure.value)
    assert queue_depth(first.service.dead_letter_queue) == 1  # nothing lost


@pytest.mark.django_db(transaction=True)  # the admin's auth and session tables too
def test_collect_now_in_the_admin_stores_a_poison_message_and_reports_a_failing_service(
    make_bed, superuser_client
):
    # given a dead copy with a NaN body in one service, and a service PostgreSQL refuses
    poisoned, refused = make_bed(), make_bed()
    dead_copy(poisoned, b'{"total": NaN}', {"x-death-reason": "odd"})
    genuine_dead_letter(refused)
    run_worker(refused)
    # when the operator presses "collect now"
    with postgresql_refuses(f"NEW.service = '{refused.service.name}'", errcode="P0001"):
        response = superuser_client.post(
            reverse("admin:outbox_consumer_deadletter_collect"), follow=True
        )
    # then the poison message is stored, and the failing service is reported
    page = response.content.decode().lower()  # the admin capitalises its messages
    assert f"{poisoned.service.name}: 1 new dead letter(s)" in page
    assert f"{refused.service.name}: 1 message(s) could not be stored" in page
    assert dead_letters_of(poisoned).get().payload is None
    assert queue_depth(refused.service.dead_letter_queue) == 1
