"""Real worker processes: SIGKILL between commit and ack; the Celery worker's bootstep, with its
metrics endpoint and JSON logs."""

import json
import os
import signal

import pytest

from outbox.conf import get_settings
from outbox.consumer.conf import PAUSE_BEFORE_ACK_ENV
from outbox.consumer.models import InboxEntry
from outbox.consumer.tests.conftest import consumer_db
from outbox.consumer.tests.support import bed_worker, event_message, publish, queue_depth
from outbox.models import OutboxMessage
from outbox.tests.helpers import free_port, metric, scrape_port, wait_for

pytestmark = consumer_db


def effects(bed, event_id: str) -> int:
    return OutboxMessage.objects.filter(type=bed.charged.type, causation_id=event_id).count()


def test_sigkill_after_commit_before_ack_leaves_the_effect_exactly_once(make_bed, tmp_path):
    # given an event, and a worker that pauses between its commit and its ack (test-only hook)
    bed = make_bed()
    message = event_message(bed.placed)
    event_id = message.properties["message_id"]
    publish(message, exchange=bed.exchange, routing_key=bed.placed.type)
    worker = bed_worker(tmp_path, bed, "command", **{PAUSE_BEFORE_ACK_ENV: "60"})
    try:
        worker.wait_for_log("pausing before ack")
        # when it is killed right after the commit
        assert effects(bed, event_id) == 1
        worker.stop(signal.SIGKILL)
    finally:
        worker.stop(signal.SIGKILL)
    # then the unacknowledged event is still (or again) in the queue
    wait_for(lambda: queue_depth(bed.service.queue_name) == 1, 10, "the redelivery")
    # and a restarted worker acknowledges it as a duplicate: the effect exists exactly once
    again = bed_worker(tmp_path, bed, "command", "--exit-when-idle", "1")
    assert again.wait(60) == 0, again.log
    assert "duplicate ignored" in again.log
    assert effects(bed, event_id) == 1
    assert InboxEntry.objects.filter(service=bed.service.name).count() == 1
    assert queue_depth(bed.service.queue_name) == 0


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_celery_worker_with_consume_service_handles_events(make_bed, tmp_path):
    # given a Celery worker started with --consume-service for the test service, with
    # --metrics-port and JSON logs
    bed = make_bed()
    port = free_port()
    worker = bed_worker(
        tmp_path,
        bed,
        "celery",
        "--metrics-port",
        str(port),
        CELERY_BROKER_URL=get_settings().broker_url,
        LOG_FORMAT="json",
    )
    try:
        worker.wait_for_log("ready.")
        # when an event is published
        message = event_message(bed.placed)
        publish(message, exchange=bed.exchange, routing_key=bed.placed.type)
        # then the worker's consumer step handles it once, in the worker's main process
        event_id = message.properties["message_id"]
        wait_for(lambda: effects(bed, event_id) == 1, 30, "the effect")
        wait_for(lambda: queue_depth(bed.service.queue_name) == 0, 10, "the ack")
        # and the worker's metrics endpoint counts it for the service and type
        labels = {"service": bed.service.name, "event_type": bed.placed.type}
        samples = scrape_port(port)
        assert metric(samples, "outbox_consumer_events_total", outcome="handled", **labels) == 1
    finally:
        assert worker.stop(signal.SIGTERM) == 0, worker.log
    # and its log line about the event is JSON naming the event, its correlation and the service
    about = [json.loads(line) for line in worker.log.splitlines() if event_id in line]
    (line,) = [line for line in about if ": handled event=" in line["message"]]
    assert line["event_id"] == event_id
    assert line["event_type"] == bed.placed.type
    assert line["correlation_id"] == message.properties["correlation_id"]
    assert line["service"] == bed.service.name
