"""Real worker processes: SIGKILL between commit and ack; the Celery worker's bootstep, with its
metrics endpoint and JSON logs."""

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from outbox.conf import get_settings
from outbox.consumer.conf import PAUSE_BEFORE_ACK_ENV
from outbox.consumer.models import InboxEntry
from outbox.consumer.tests.conftest import consumer_db
from outbox.consumer.tests.support import (
    event_message,
    process_env,
    publish,
    queue_depth,
    wait_for,
)
from outbox.models import OutboxMessage
from outbox.tests.helpers import free_port, metric, scrape_port

pytestmark = consumer_db
BASE_DIR = Path(__file__).resolve().parents[3]


def bed_args(bed) -> list[str]:
    return [bed.service.name, bed.exchange]


class WorkerProcess:
    """A test bed's worker as a child process, its output in a log file."""

    def __init__(self, tmp_path: Path, bed, mode: str, *args: str, **env: str) -> None:
        self.log_path = tmp_path / f"{mode}-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "outbox.consumer.tests.process", mode, *bed_args(bed), *args],
            cwd=BASE_DIR,
            env=process_env(**env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        wait_for(lambda: text in self.log or self.process.poll() is not None, timeout, text)
        assert text in self.log, f"worker exited ({self.process.returncode}):\n{self.log}"

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()


def effects(bed, event_id: str) -> int:
    return OutboxMessage.objects.filter(type=bed.charged.type, causation_id=event_id).count()


def test_sigkill_after_commit_before_ack_leaves_the_effect_exactly_once(make_bed, tmp_path):
    # given an event, and a worker that pauses between its commit and its ack (test-only hook)
    bed = make_bed()
    message = event_message(bed.placed)
    event_id = message.properties["message_id"]
    publish(message, exchange=bed.exchange, routing_key=bed.placed.type)
    worker = WorkerProcess(tmp_path, bed, "command", **{PAUSE_BEFORE_ACK_ENV: "60"})
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
    again = WorkerProcess(tmp_path, bed, "command", "--exit-when-idle", "1")
    assert again.process.wait(60) == 0, again.log
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
    worker = WorkerProcess(
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
