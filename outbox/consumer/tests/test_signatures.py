"""Signed events through the real dispatcher, RabbitMQ and PostgreSQL: every event that does
not verify is dead-lettered with its reason, its effect never applied, and the next one flows."""

import json
import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction
from prometheus_client import REGISTRY

from outbox.consumer.dead_letters import collect, requeue
from outbox.consumer.models import DeadLetter, InboxEntry
from outbox.consumer.tests.conftest import consumer_db, run_worker
from outbox.consumer.tests.support import event_message, get_all, publish, queue_depth
from outbox.consumer.verification import sign_message
from outbox.models import OutboxMessage
from outbox.recording import record_event
from outbox.relay import Relay
from outbox.replay import ReplayFilters, replay_events
from outbox.signing import KEY_ID_HEADER, SIGNATURE_HEADER, SigningKey, parse_keyring

pytestmark = consumer_db

PRODUCER = "test.producer"
OTHER = "test.other"
PRODUCER_OLD = f"{PRODUCER}:prod-1:" + "p" * 40
PRODUCER_NEW = f"{PRODUCER}:prod-2:" + "q" * 40
OTHER_KEY = f"{OTHER}:other-1:" + "o" * 40


@pytest.fixture(autouse=True)
def _keys(settings):
    """The bed's event types are published by ``test.producer``; ``test.other`` is a second
    service with a key of its own (the attacker in the source tests)."""
    settings.OUTBOX_SOURCE = PRODUCER
    settings.OUTBOX_SIGNING_KEYS = f"{PRODUCER_OLD},{OTHER_KEY}"


def headers_of(message):
    return message.properties["application_headers"]


def send(bed, message):
    publish(message, exchange=bed.exchange, routing_key=headers_of(message)["ce-type"])


def key(spec: str) -> SigningKey:
    (only,) = parse_keyring(spec).keys
    return only


# --- the bad deliveries: each built from a correctly signed event ---------------------------


def _unsigned(bed):
    message = event_message(bed.placed)
    del headers_of(message)[SIGNATURE_HEADER], headers_of(message)[KEY_ID_HEADER]
    return message


def _forged(bed):
    # the right key id, a secret the attacker made up
    message = event_message(bed.placed)
    return sign_message(message, SigningKey(PRODUCER, "prod-1", b"guessed-" * 5))


def _wrong_key_id(bed):
    message = event_message(bed.placed)
    return sign_message(message, SigningKey(PRODUCER, "prod-9", b"unknown-" * 5))


def _tampered_body(bed):
    message = event_message(bed.placed, payload={"order_id": "o-1", "total": "10.00"})
    message.body = json.dumps({"order_id": "o-1", "total": "0.01"}).encode()
    return message


def _tampered_envelope(bed):
    message = event_message(bed.placed, subject="o-1")
    headers_of(message)["ce-subject"] = "o-2"
    return message


def _non_ascii_signature(bed):
    # not hex at all: must fail like any bad signature, not crash the check (and requeue)
    message = event_message(bed.placed)
    headers_of(message)[SIGNATURE_HEADER] = "v1=" + "é" * 64
    return message


def _nan_in_body(bed):
    # Python's json reads NaN: the check must refuse it, not crash on it (and requeue)
    message = event_message(bed.placed, payload={"order_id": "o-1", "total": "10.00"})
    message.body = b'{"order_id": "o-1", "total": NaN}'
    return message


def _key_of_another_source(bed):
    # the other service signs with its own valid key an event that claims the producer's source
    message = event_message(bed.placed)
    headers_of(message)["ce-source"] = OTHER
    sign_message(message, key(OTHER_KEY))
    headers_of(message)["ce-source"] = PRODUCER
    return message


def _type_of_another_source(bed):
    # the other service, honest about its source and with a valid signature, publishes a type
    # that only the producer publishes (it would forge an order with its own key)
    message = event_message(bed.placed)
    headers_of(message)["ce-source"] = OTHER
    return sign_message(message, key(OTHER_KEY))


@pytest.mark.parametrize(
    ("make_message", "reason", "kind"),
    [
        (_unsigned, "unsigned event (no x-outbox-signature header)", "unsigned"),
        (_forged, "bad signature (key 'prod-1')", "bad_signature"),
        (_wrong_key_id, "unknown key id 'prod-9'", "unknown_key"),
        (_tampered_body, "forged, or altered after it was signed", "bad_signature"),
        (_tampered_envelope, "forged, or altered after it was signed", "bad_signature"),
        (_non_ascii_signature, "bad signature (key 'prod-1')", "bad_signature"),
        (_nan_in_body, "the payload is not signable", "bad_signature"),
        (
            _key_of_another_source,
            "source mismatch: key 'other-1' belongs to 'test.other'",
            "source_mismatch",
        ),
        (
            _type_of_another_source,
            "is published by 'test.producer', not by 'test.other'",
            "source_mismatch",
        ),
    ],
    ids=[
        "unsigned",
        "forged",
        "wrong-key-id",
        "tampered-body",
        "tampered-envelope",
        "non-ascii-signature",
        "nan-in-body",
        "key-of-another-source",
        "type-of-another-source",
    ],
)
def test_an_event_that_does_not_verify_is_dead_lettered_and_never_applied(
    bed, make_message, reason, kind
):
    # given a bad event followed by a good one
    bad = make_message(bed)
    send(bed, bad)
    good = event_message(bed.placed, subject="o-2")
    send(bed, good)
    # when the worker runs
    stats = run_worker(bed)
    # then the bad one is in the dead-letter queue with the reason, at once (no retries)
    assert (stats["dead"], stats["retried"], stats["handled"]) == (1, 0, 1)
    (dead,) = get_all(bed.service.dead_letter_queue)
    assert dead.properties["message_id"] == bad.properties["message_id"]
    death = headers_of(dead)["x-death-reason"]
    assert death.startswith("signature check failed: ")
    assert reason in death
    # and its effect was never applied: no handler call, no inbox row, no outgoing event
    bad_id = uuid.UUID(bad.properties["message_id"])
    assert bad_id not in [call.id for call in bed.calls]
    assert not InboxEntry.objects.filter(event_id=bad_id).exists()
    assert not OutboxMessage.objects.filter(causation_id=str(bad_id)).exists()
    # and the worker went on: the good event was handled
    assert [str(call.id) for call in bed.calls] == [good.properties["message_id"]]
    assert queue_depth(bed.service.queue_name) == 0
    # and the failure is counted for the operators' alert, by kind
    labels = {"service": bed.service.name, "kind": kind}
    assert REGISTRY.get_sample_value("outbox_consumer_signature_failures_total", labels) == 1


def test_events_recorded_and_relayed_verify_after_the_jsonb_round_trip(bed):
    # given a payload whose jsonb text differs from what the producer wrote: key order,
    # spacing, and numbers (jsonb prints 1e300 with 300 zeros, 1.5e-07 as 0.00000015, -0.0 as 0)
    numbers = [1e20, 1.5e-07, 1.0, -0.0, 1e300, 0.1 + 0.2, 12345678901234567890123, "é\u2028"]
    payload = {"total": "12.50", "order_id": "o-5", "numbers": numbers}
    with transaction.atomic():
        recorded = record_event(bed.placed, aggregate_id="o-5", payload=payload)
    assert recorded.headers[KEY_ID_HEADER] == "prod-1"
    # when the real relay publishes it and the worker consumes it
    assert Relay(once=True).run() == 1
    stats = run_worker(bed)
    # then it verifies and is handled
    assert (stats["handled"], stats["dead"]) == (1, 0)
    assert [call.id for call in bed.calls] == [recorded.event_id]


def test_key_rotation_accepts_the_old_key_during_the_window_only(bed, settings):
    # given an event signed with the old key (the producer before the rotation)
    old = event_message(bed.placed, subject="o-old")
    assert headers_of(old)[KEY_ID_HEADER] == "prod-1"
    # when the rotation starts: new key first (it signs), old key still listed (it verifies)
    settings.OUTBOX_SIGNING_KEYS = f"{PRODUCER_NEW},{PRODUCER_OLD},{OTHER_KEY}"
    new = event_message(bed.placed, subject="o-new")
    assert headers_of(new)[KEY_ID_HEADER] == "prod-2"
    send(bed, old)
    send(bed, new)
    stats = run_worker(bed)
    # then both are handled
    assert (stats["handled"], stats["dead"]) == (2, 0)
    # when the old key is removed, an event still signed with it (a straggler) is refused
    late = sign_message(event_message(bed.placed, subject="o-late"), key(PRODUCER_OLD))
    settings.OUTBOX_SIGNING_KEYS = f"{PRODUCER_NEW},{OTHER_KEY}"
    send(bed, late)
    send(bed, event_message(bed.placed, subject="o-after"))
    stats = run_worker(bed)
    # then it is dead-lettered as signed with an unknown key, and new-key events still flow
    assert (stats["handled"], stats["dead"]) == (1, 1)
    (dead,) = get_all(bed.service.dead_letter_queue)
    assert "unknown key id 'prod-1'" in headers_of(dead)["x-death-reason"]
    assert [call.subject for call in bed.calls] == ["o-old", "o-new", "o-after"]


def test_replayed_events_verify_and_a_replayed_but_altered_one_is_refused(bed):
    # given two events recorded (signed by their producer) and published
    with transaction.atomic():
        kept = record_event(
            bed.placed, aggregate_id="o-1", payload={"order_id": "o-1", "total": "1.00"}
        )
        altered = record_event(
            bed.placed, aggregate_id="o-2", payload={"order_id": "o-2", "total": "2.00"}
        )
    assert Relay(once=True).run() == 2
    stats = run_worker(bed)
    assert stats["handled"] == 2
    # and one of them altered in the retained log afterwards (someone with write access to it)
    OutboxMessage.objects.filter(pk=altered.pk).update(payload={"order_id": "o-2", "total": "0.02"})
    # when both are replayed to the service, to be applied again (--reprocess)
    # (the test database only: the other aliases may still name databases this test cannot use)
    result = replay_events(
        bed.service, filters=ReplayFilters(), reprocess=True, databases=["default"]
    )
    assert result.sent == 2
    stats = run_worker(bed)
    # then the untouched one verifies (the relay's key-less copy of the producer's signature)
    # and is applied again, and the altered one is dead-lettered, never applied
    assert (stats["handled"], stats["dead"]) == (1, 1)
    assert [call.id for call in bed.calls] == [kept.event_id, altered.event_id, kept.event_id]
    (dead,) = get_all(bed.service.dead_letter_queue)
    assert dead.properties["message_id"] == str(altered.event_id)
    assert "altered after it was signed" in headers_of(dead)["x-death-reason"]
    assert headers_of(dead)["x-outbox-replay"] == "true"


def test_a_row_signed_again_after_a_rotation_replays_once_the_old_key_is_gone(bed, settings):
    # given an event recorded with the old key, relayed and handled
    with transaction.atomic():
        recorded = record_event(
            bed.placed, aggregate_id="o-1", payload={"order_id": "o-1", "total": "1.00"}
        )
    assert Relay(once=True).run() == 1
    assert run_worker(bed)["handled"] == 1
    # when the key is rotated (the new one signs), the retained row is signed again with it,
    # and the old key is removed everywhere
    settings.OUTBOX_SIGNING_KEYS = f"{PRODUCER_NEW},{PRODUCER_OLD},{OTHER_KEY}"
    call_command("resign_outbox", "--key-id", "prod-1", stdout=StringIO())
    recorded.refresh_from_db()
    assert recorded.headers[KEY_ID_HEADER] == "prod-2"
    settings.OUTBOX_SIGNING_KEYS = f"{PRODUCER_NEW},{OTHER_KEY}"
    # and the event is replayed to the service, to be applied again
    result = replay_events(
        bed.service, filters=ReplayFilters(), reprocess=True, databases=["default"]
    )
    assert result.sent == 1
    stats = run_worker(bed)
    # then the replayed copy verifies with the new key and is applied (not dead-lettered)
    assert (stats["handled"], stats["dead"]) == (1, 0)
    assert [call.id for call in bed.calls] == [recorded.event_id, recorded.event_id]


def test_a_consumer_missing_a_new_key_dead_letters_until_configured_then_a_requeue_applies(
    bed, settings
):
    # given a producer that already signs with a new key this consumer was not given
    settings.OUTBOX_SIGNING_KEYS = f"{PRODUCER_NEW},{OTHER_KEY}"
    message = event_message(bed.placed)
    settings.OUTBOX_SIGNING_KEYS = f"{PRODUCER_OLD},{OTHER_KEY}"
    send(bed, message)
    assert run_worker(bed)["dead"] == 1
    collect(bed.service)
    (row,) = DeadLetter.objects.filter(service=bed.service.name)
    assert "unknown key id 'prod-2'" in row.reason
    # when the operator adds the key to the consumer and requeues the dead letter
    settings.OUTBOX_SIGNING_KEYS = f"{PRODUCER_NEW},{PRODUCER_OLD},{OTHER_KEY}"
    assert requeue([row.id], by="test").done == [row.id]
    # then the requeued copy (original signature, through the dead-letter table) verifies
    assert run_worker(bed)["handled"] == 1
    assert [str(call.id) for call in bed.calls] == [message.properties["message_id"]]
