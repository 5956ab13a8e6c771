"""Maintenance on a schedule: Celery beat sends the collect and prune tasks to the maintenance
queue, and the `maintenance:` worker of the Procfile (a real process) runs them."""

import contextlib
import shlex
import sys
import uuid
from pathlib import Path

import amqp
import pytest
from django.core.management import call_command

from fitness.celery import MAINTENANCE_QUEUE, app
from outbox.consumer.models import DeadLetter
from outbox.consumer.service import get_service
from outbox.consumer.tasks import COLLECT_TASK, PRUNE_TASK
from outbox.tests.helpers import BASE_DIR, broker_connection, wait_for
from outbox.tests.processes import ChildProcess

PROCFILE = BASE_DIR / "Procfile"


def procfile() -> dict[str, str]:
    lines = (line.split(":", 1) for line in PROCFILE.read_text().splitlines() if ":" in line)
    return {name.strip(): command.strip() for name, command in lines}


def test_beat_schedules_collect_and_prune_on_the_maintenance_queue():
    app.loader.import_default_modules()  # what a worker or beat does at start-up
    schedule = {entry["task"]: entry for entry in app.conf.beat_schedule.values()}
    assert set(schedule) == {COLLECT_TASK, PRUNE_TASK}
    assert schedule[COLLECT_TASK]["schedule"] == 60
    assert schedule[PRUNE_TASK]["schedule"] == 3600
    for task, entry in schedule.items():
        assert task in app.tasks
        assert entry["options"]["expires"] == entry["schedule"]  # no backlog of stale runs
        assert app.amqp.router.route({}, task)["queue"].name == MAINTENANCE_QUEUE


def test_procfile_runs_beat_and_a_maintenance_worker():
    processes = procfile()
    assert "celery -A fitness beat" in processes["beat"]
    assert f"-Q {MAINTENANCE_QUEUE}" in processes["maintenance"]


@pytest.fixture
def maintenance_worker(tmp_path: Path):
    """The Procfile's `maintenance:` line, as a real process on the test database and vhost."""
    connection = broker_connection()
    with contextlib.suppress(amqp.exceptions.NotFound):
        connection.channel().queue_purge(MAINTENANCE_QUEUE)  # stale runs of earlier tests
    connection.close()
    argv = shlex.split(procfile()["maintenance"])
    assert argv[0] == "celery"
    argv = [sys.executable, "-m", "celery", *argv[1:], "--without-heartbeat"]
    argv[argv.index("-n") + 1] = f"maintenance-{uuid.uuid4().hex[:6]}@%h"
    worker = ChildProcess.start(tmp_path, "maintenance", argv)
    try:
        yield worker.log_path
    finally:
        worker.stop()
        print(worker.log[-4000:])


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_the_maintenance_worker_collects_dead_letters_and_prunes(maintenance_worker):
    # given a dead copy waiting in a real service's dead-letter queue
    call_command("setup_broker", verbosity=0)
    service = get_service("notifications")
    event_id = str(uuid.uuid4())
    connection = broker_connection()
    try:
        channel = connection.channel()
        channel.queue_purge(service.dead_letter_queue)
        message = amqp.Message(
            b'{"order_id": 1}',
            message_id=event_id,
            application_headers={
                "ce-id": event_id,
                "ce-type": "orders.order.placed",
                "x-death-reason": "no handler for event type 'orders.order.placed'",
                "x-attempts": 1,
            },
        )
        channel.basic_publish_confirm(message, exchange="", routing_key=service.dead_letter_queue)
    finally:
        connection.close()
    # when beat's two tasks are sent (as beat would, through the routes)
    app.send_task(COLLECT_TASK)
    app.send_task(PRUNE_TASK)
    # then the maintenance worker moved the dead letter into the table, and pruned
    wait_for(lambda: DeadLetter.objects.filter(event_id=event_id).exists(), 60, "dead letter")
    row = DeadLetter.objects.get(event_id=event_id)
    assert (row.service, row.attempts, row.state) == ("notifications", 1, DeadLetter.State.OPEN)
    assert "no handler" in row.reason
    wait_for(lambda: "prune_events: " in maintenance_worker.read_text(), 60, "prune log line")
