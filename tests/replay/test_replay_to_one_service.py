"""Replay to one service with its real worker: only its queue gets the events; without
``--reprocess`` nothing changes, with it a wiped projection is rebuilt exactly; an interrupted
replay run again applies each event once."""

import io
import uuid

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from consumers.analytics.handlers import service as analytics
from consumers.analytics.selectors import analytics_figures
from consumers.analytics.services import analytics_reset
from outbox.consumer.models import InboxEntry
from outbox.models import OutboxMessage, ReplayRun
from outbox.replay import PAUSE_AFTER_CONFIRM_ENV
from outbox.tests.helpers import broker_connection, wait_for
from tests.replay.conftest import (
    analytics_events,
    assert_same_figures,
    duplicates_in_log,
    figures_from_log,
    handled_in_log,
    place_orders,
    queue_depth,
    record_saga,
    wait_until_published,
)

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")
OTHER_QUEUES = ["payments.events", "shipping.events", "notifications.events", "orders.events"]


def _inbox() -> int:
    return InboxEntry.objects.filter(service="analytics").count()


def _replay(*args: str) -> str:
    out = io.StringIO()
    call_command("replay_events", "--service", "analytics", *args, stdout=out)
    return out.getvalue()


def _purge(queues: list[str]) -> None:
    connection = broker_connection()
    try:
        for queue in queues:
            connection.channel().queue_purge(queue)
    finally:
        connection.close()


def test_replay_reaches_only_its_service_and_reprocess_rebuilds_the_projection(start_saga, spawn):
    # given analytics running live while 30 orders go through the saga
    orders = place_orders(30)
    record_saga(orders, delivered_every=3)
    worker = spawn("consume_events", "--service", "analytics")
    relay = spawn("relay_outbox")
    wait_until_published()
    relay.stop()
    events = analytics_events()
    wait_for(lambda: _inbox() == len(events), 60, "analytics to handle the live events")
    live = analytics_figures()
    assert_same_figures(live, figures_from_log())
    _purge(OTHER_QUEUES)  # they hold the live events: no worker of theirs is running

    # when the whole log is replayed to analytics, without --reprocess
    output = _replay()
    run = ReplayRun.objects.get()
    # then it reached analytics only, whose inbox dropped every event as already handled
    assert f"sent {len(events)}" in output
    wait_for(lambda: duplicates_in_log(worker, run=str(run.pk)) == len(events), 60, "duplicates")
    assert [queue_depth(name) for name in OTHER_QUEUES] == [0, 0, 0, 0]
    assert _inbox() == len(events)
    assert analytics_figures() == live

    # when its tables (not its inbox) are wiped and the log is replayed with --reprocess
    with transaction.atomic(using=analytics.database):
        analytics_reset(analytics.database)
    assert analytics_figures().steps["placed"] == 0
    _replay("--reprocess")
    # then every event is applied again, once, and the projection is exactly the live one
    wait_for(lambda: _inbox() == 2 * len(events), 60, "analytics to reprocess the log")
    assert analytics_figures() == live
    assert [queue_depth(name) for name in OTHER_QUEUES] == [0, 0, 0, 0]


def test_an_interrupted_reprocess_run_again_applies_each_event_once(start_saga, spawn):
    # given 40 published orders (a few cancelled) and the analytics worker running
    place_orders(40)
    OutboxMessage.objects.update(published_at=timezone.now())
    events = {str(row.event_id) for row in analytics_events()}
    worker = spawn("consume_events", "--service", "analytics")
    # when a reprocess replay is SIGKILLed after its 2nd batch was confirmed by the broker but
    # before the run recorded it (the test hook pauses right there)
    args = ("--service", "analytics", "--reprocess", "--batch-size", "10")
    replay = spawn("replay_events", *args, **{PAUSE_AFTER_CONFIRM_ENV: "1"})
    wait_for(lambda: replay.log.count("pausing before recording") >= 2, 60, "the 2nd batch")
    replay.process.kill()
    replay.process.wait(5)
    run = ReplayRun.objects.get()
    assert run.finished_at is None and run.sent == 10
    # and the same command is run again
    output = _replay(*args[2:])
    # then it resumed the same run: 10 were recorded as sent, the others went out (the 10 of the
    # killed batch a second time) and the run is finished
    assert f"run {run.pk}" in output
    assert f"sent {len(events) - 10}, 10 sent earlier (resumed), finished" in output
    handled = lambda: handled_in_log(worker, run=str(run.pk))  # noqa: E731
    wait_for(lambda: len(handled()) == len(events), 60, "every event reprocessed")
    wait_for(lambda: duplicates_in_log(worker, run=str(run.pk)) == 10, 20, "10 duplicates")
    # and each event was applied exactly once in this run
    assert set(handled()) == events
    assert set(handled().values()) == {1}
    keys = {str(uuid.uuid5(uuid.UUID(e), str(run.pk))) for e in events}
    stored = {str(k) for k in InboxEntry.objects.values_list("event_id", flat=True)}
    assert keys <= stored
    assert ReplayRun.objects.get().finished_at is not None
