"""replay_events in-process against the real RabbitMQ: what is selected, what goes on the wire,
in which order, and how runs are resumed. (The worker side: test_replay_to_one_service.py.)"""

import contextlib
import io
import uuid
from datetime import UTC, datetime, timedelta

import amqp
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from apps.orders.events import ORDER_CANCELLED, ORDER_PLACED
from consumers.analytics.handlers import service as analytics
from outbox.claiming import CLAIM_SQL, claim_batch, claim_params
from outbox.consumer.events import (
    REPLAY_HEADER,
    REPLAY_RUN_HEADER,
    REPROCESS_HEADER,
    parse_event,
)
from outbox.consumer.inbox import inbox_key
from outbox.consumer.service import ConsumerService, unregister_service
from outbox.consumer.topology import declare_service
from outbox.models import OutboxMessage, ReplayRun
from outbox.recording import record_event
from outbox.replay import ReplayError, ReplayFilters, TextProgress, parse_moment, replay_events
from outbox.retention import inbox_memory_start
from outbox.tests.helpers import broker_connection, get_messages
from outbox.wire import to_amqp
from tests.replay.conftest import place_orders, queue_depth

pytestmark = pytest.mark.django_db(databases="__all__")
ALL = ReplayFilters()


def _publish_all() -> list[OutboxMessage]:
    OutboxMessage.objects.update(published_at=timezone.now())
    return list(OutboxMessage.objects.order_by("id"))


@pytest.fixture
def channel(start_saga):
    """The topology declared, every service queue purged (start_saga), and a channel."""
    conn = broker_connection()
    yield conn.channel()
    conn.close()


@pytest.fixture
def cancellations_only():
    """A throw-away service that handles orders.order.cancelled only, with its queue."""
    service = ConsumerService(f"replaytest-{uuid.uuid4().hex[:8]}")
    service.handles(ORDER_CANCELLED.type, version=1)(lambda event: None)
    yield service
    unregister_service(service.name)
    conn = broker_connection()
    for queue in [service.queue_name, service.dead_letter_queue, *service.retry_queues]:
        with contextlib.suppress(amqp.exceptions.ChannelError):
            conn.channel().queue_delete(queue)
    with contextlib.suppress(amqp.exceptions.ChannelError):
        conn.channel().exchange_delete(service.dead_letter_exchange)
    conn.close()


def test_copies_reach_the_service_queue_only_with_the_original_envelope_and_body(channel):
    place_orders(3, declined_every=None, cancelled_every=None)
    # what the relay sends for these rows: its own claim and wire format
    rows = sorted(claim_batch(partitions=range(64), limit=10), key=lambda row: row.id)
    _publish_all()
    result = replay_events(analytics, filters=ALL)
    assert (result.matched, result.skipped, result.sent, result.finished) == (3, 0, 3, True)
    messages = get_messages(channel, analytics.queue_name, 3)
    assert [m.properties["message_id"] for m in messages] == [str(r.event_id) for r in rows]
    for message, row in zip(messages, rows, strict=True):
        original = to_amqp(row)
        assert message.body == original.body
        headers = dict(message.headers)
        assert headers.pop(REPLAY_HEADER) == "true"
        assert headers.pop(REPLAY_RUN_HEADER) == str(result.run_id)
        assert REPROCESS_HEADER not in headers
        headers.pop("x-delivery-count", None)  # added by the quorum queue
        assert headers == original.headers
        for name in ("content_type", "correlation_id", "type", "app_id", "delivery_mode"):
            assert message.properties[name] == original.properties[name]
    # payments subscribes to orders.order.placed too, and got nothing
    assert queue_depth("payments.events") == queue_depth("notifications.events") == 0


def test_only_the_types_the_service_handles_are_sent(channel, cancellations_only):
    place_orders(6, declined_every=None, cancelled_every=3)  # 6 placed, 2 cancelled
    _publish_all()
    with pytest.raises(ReplayError, match="setup_broker"):
        replay_events(cancellations_only, filters=ALL)
    declare_service(channel, cancellations_only)
    result = replay_events(cancellations_only, filters=ALL, reprocess=True)
    assert (result.matched, result.skipped, result.sent) == (8, 6, 2)
    messages = get_messages(channel, cancellations_only.queue_name, 3, timeout=1)
    assert [m.headers["ce-type"] for m in messages] == [ORDER_CANCELLED.type] * 2
    assert {m.headers[REPROCESS_HEADER] for m in messages} == {"true"}


def test_filters_by_time_type_aggregate_and_correlation():
    orders = place_orders(4, declined_every=None, cancelled_every=2)  # orders 1 and 3 cancelled
    rows = _publish_all()
    long_ago = datetime(2026, 1, 1, tzinfo=UTC)
    OutboxMessage.objects.filter(pk=rows[0].pk).update(occurred_at=long_ago)

    def count(**filters) -> int:
        # reprocess: the filters alone (a plain replay stops at the inbox's memory, see below)
        filters = ReplayFilters(**filters)
        return replay_events(analytics, filters=filters, dry_run=True, reprocess=True).remaining

    assert count() == 6
    assert count(since=long_ago + timedelta(days=1)) == 5
    assert count(until=long_ago + timedelta(days=1)) == 1
    assert count(types=(ORDER_CANCELLED.type,)) == 2
    assert count(aggregates=(f"order:{orders[1].pk}",)) == 2
    assert count(aggregates=(str(orders[1].pk), f"payment:{orders[1].pk}")) == 2
    assert count(aggregates=(f"payment:{orders[1].pk}",)) == 0
    assert count(correlations=(str(orders[2].correlation_id),)) == 1
    assert not ReplayRun.objects.exists()  # a dry run records nothing


def test_a_plain_replay_refuses_events_older_than_the_inbox_remembers(channel):
    # given two events, one older than what the inbox surely remembers (the pruning lags behind)
    place_orders(2, declined_every=None, cancelled_every=None)
    old, recent = _publish_all()
    start = inbox_memory_start()
    OutboxMessage.objects.filter(pk=old.pk).update(occurred_at=start - timedelta(hours=1))
    too_early = (start - timedelta(days=1)).isoformat()
    # when an operator replays from before that moment, without --reprocess
    with pytest.raises(CommandError, match="older than what the inbox of analytics") as refused:
        call_command("replay_events", "--service", "analytics", "--since", too_early)
    # then the command fails, and nothing was sent or recorded
    assert refused.value.returncode == 1
    assert "--reprocess" in str(refused.value)
    assert queue_depth(analytics.queue_name) == 0
    assert not ReplayRun.objects.exists()
    # without --since it replays from that moment on, and says so: the old event stays out
    notes = io.StringIO()
    call_command("replay_events", "--service", "analytics", stdout=io.StringIO(), stderr=notes)
    assert "no --since" in notes.getvalue()
    sent = get_messages(channel, analytics.queue_name, 2, timeout=1)
    assert [m.properties["message_id"] for m in sent] == [str(recent.event_id)]
    # and with --reprocess the operator asks for every event again, on purpose
    call_command("replay_events", "--service", "analytics", "--since", too_early, "--reprocess")
    assert len(get_messages(channel, analytics.queue_name, 3, timeout=1)) == 2


def test_a_run_is_not_resumed_once_the_inbox_may_have_forgotten_its_events(channel):
    place_orders(2, declined_every=None, cancelled_every=None)
    _publish_all()
    first = replay_events(analytics, filters=ALL, raw_filters={"since": "7d"}, limit=1)
    # when the unfinished run is resumed after the inbox pruned past its start
    forgotten = inbox_memory_start(margin=timedelta(0)) - timedelta(minutes=1)
    ReplayRun.objects.filter(pk=first.run_id).update(since=forgotten)
    with pytest.raises(ReplayError, match="may have forgotten"):
        replay_events(analytics, filters=ALL, raw_filters={"since": "7d"})
    with pytest.raises(ReplayError, match="may have forgotten"):
        replay_events(analytics, filters=ALL, resume=first.run_id)
    # then nothing more was sent
    assert len(get_messages(channel, analytics.queue_name, 2, timeout=1)) == 1


def test_events_of_each_aggregate_go_out_in_their_original_order(channel):
    orders = place_orders(3, declined_every=None, cancelled_every=None)
    # later events of the orders, committed interleaved, in several transactions
    for _ in range(3):
        for order in reversed(orders):
            with transaction.atomic():
                record_event(
                    ORDER_PLACED,  # any valid payload will do: same type, next sequence
                    aggregate_id=str(order.pk),
                    payload=OutboxMessage.objects.filter(aggregate_id=str(order.pk))
                    .first()
                    .payload,
                )
    _publish_all()
    result = replay_events(analytics, filters=ALL, batch_size=4)
    messages = get_messages(channel, analytics.queue_name, result.sent)
    per_order: dict[str, list[int]] = {}
    for message in messages:
        per_order.setdefault(message.headers["ce-subject"], []).append(
            message.headers["ce-sequence"]
        )
    assert per_order == {str(order.pk): [1, 2, 3, 4] for order in orders}


def test_a_limited_run_is_resumed_by_the_same_command_then_a_new_run_starts(channel):
    place_orders(5, declined_every=None, cancelled_every=None)
    _publish_all()
    raw = {"since": "30d"}
    since = parse_moment("30d")
    first = replay_events(analytics, filters=ReplayFilters(since=since), raw_filters=raw, limit=2)
    assert (first.sent, first.finished, first.remaining) == (2, False, 3)
    # the same command (same raw filters, although "30d" now means a slightly later moment)
    later = parse_moment("30d")
    again = replay_events(analytics, filters=ReplayFilters(since=later), raw_filters=raw)
    assert (again.run_id, again.resumed, again.already_sent, again.sent) == (
        first.run_id,
        True,
        2,
        3,
    )
    assert again.finished
    # a finished run is never resumed: the same command now starts a new run
    third = replay_events(analytics, filters=ReplayFilters(since=later), raw_filters=raw, limit=1)
    assert third.run_id != first.run_id and not third.resumed
    # --new-run does not pick up the unfinished one; --resume names it
    fourth = replay_events(analytics, filters=ALL, raw_filters=raw, limit=1, new_run=True)
    assert fourth.run_id not in {first.run_id, third.run_id}
    resumed = replay_events(analytics, filters=ALL, resume=third.run_id)
    assert (resumed.run_id, resumed.sent, resumed.finished) == (third.run_id, 4, True)
    with pytest.raises(ReplayError, match="finished"):
        replay_events(analytics, filters=ALL, resume=third.run_id)
    assert len(get_messages(channel, analytics.queue_name, 11)) == 11


def test_the_command_prints_a_dry_run_per_type_and_lists_runs(channel):
    place_orders(2, declined_every=None, cancelled_every=2)
    _publish_all()
    out = io.StringIO()
    call_command("replay_events", "--service", "analytics", "--dry-run", stdout=out)
    assert "orders.order.placed: 2" in out.getvalue()
    assert "would send 3" in out.getvalue()
    call_command("replay_events", "--service", "analytics", "--type", ORDER_CANCELLED.type)
    out = io.StringIO()
    call_command("replay_events", "--service", "analytics", "--runs", stdout=out)
    assert "sent 1/1" in out.getvalue() and "finished" in out.getvalue()


def test_moments_are_iso_dates_or_ages():
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert parse_moment("2h", now=now) == now - timedelta(hours=2)
    assert parse_moment("2026-11-20") == datetime(2026, 11, 20, tzinfo=UTC)
    assert parse_moment("2026-11-20T10:00+01:00") == datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    with pytest.raises(ReplayError):
        parse_moment("yesterday")


def _plan(sql: str, params: dict | list) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_search_indexes_serve_searches_and_stay_off_the_relay_claim():
    place_orders(2, declined_every=None, cancelled_every=None)
    claim = _plan(CLAIM_SQL, claim_params(partitions=range(16), limit=500, exclude=[1, 2]))
    assert "outbox_pending_pkey" in claim
    for search_index in ("outbox_occurred_idx", "outbox_type_idx", "outbox_correlation_idx"):
        assert search_index not in claim
    search = OutboxMessage.objects.filter(
        published_at__isnull=False,
        type=ORDER_PLACED.type,
        occurred_at__gte=timezone.now() - timedelta(days=1),
    )
    sql, params = search.query.sql_with_params()
    assert "outbox_type_idx" in _plan(sql, list(params))
    by_correlation = OutboxMessage.objects.filter(published_at__isnull=False, correlation_id="x")
    sql, params = by_correlation.query.sql_with_params()
    assert "outbox_correlation_idx" in _plan(sql, list(params))


def test_replay_headers_are_read_and_only_a_reprocess_run_changes_the_inbox_key():
    row = OutboxMessage(
        event_id=uuid.uuid4(),
        source="s",
        type=ORDER_PLACED.type,
        schema_version=1,
        aggregate_type="order",
        aggregate_id="1",
        sequence=1,
        correlation_id="c",
        occurred_at=timezone.now(),
        headers={},
        payload={"order_id": 1},
    )
    run = str(uuid.uuid4())

    def received(**headers):
        row.headers = headers
        message = to_amqp(row)
        return parse_event(message.body, message.properties)

    live = received()
    assert (live.replay, live.replay_run, live.reprocess, inbox_key(live)) == (
        False,
        None,
        False,
        row.event_id,
    )
    replayed = received(**{REPLAY_HEADER: "true", REPLAY_RUN_HEADER: run})
    assert (replayed.replay, replayed.replay_run, inbox_key(replayed)) == (True, run, row.event_id)
    again = received(**{REPLAY_HEADER: "true", REPLAY_RUN_HEADER: run, REPROCESS_HEADER: "true"})
    assert again.reprocess and inbox_key(again) == uuid.uuid5(row.event_id, run)
    # a reprocess header without a replay run cannot bypass the inbox
    forged = received(**{REPROCESS_HEADER: "true"})
    assert not forged.reprocess and inbox_key(forged) == row.event_id


def test_a_rebuild_also_selects_rows_the_relay_has_not_marked_yet_but_never_parked_ones():
    place_orders(3, declined_every=None, cancelled_every=None)
    first, _pending, parked = OutboxMessage.objects.order_by("id")
    OutboxMessage.objects.filter(pk=first.pk).update(published_at=timezone.now())
    OutboxMessage.objects.filter(pk=parked.pk).update(parked_at=timezone.now())

    def count(**filters) -> int:
        return replay_events(analytics, filters=ReplayFilters(**filters), dry_run=True).remaining

    assert count() == 1
    assert count(include_pending=True) == 2


def test_progress_is_redrawn_on_a_terminal_and_logged_by_tenths_elsewhere():
    class Stream(io.StringIO):
        def __init__(self, tty: bool) -> None:
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    log, terminal = Stream(False), Stream(True)
    bar = TextProgress(log, "replay")
    screen = TextProgress(terminal, "replay")
    for done in range(0, 101, 5):
        bar(done, 100)
        screen(done, 100)
    assert log.getvalue().count("\n") == 11  # 0 %, 10 %, ... 100 %
    assert log.getvalue().endswith("replay [" + "#" * 30 + "] 100/100\n")
    assert terminal.getvalue().count("\r") == 21 and terminal.getvalue().endswith("\n")


def test_replay_runs_are_listed_read_only_in_the_admin(admin_client):
    run = ReplayRun.objects.create(id=uuid.uuid4(), service="analytics", snapshot_at=timezone.now())
    page = admin_client.get("/admin/outbox/replayrun/?finished_at__isempty=1")
    assert page.status_code == 200 and str(run.pk) in page.content.decode()
    assert admin_client.get(f"/admin/outbox/replayrun/{run.pk}/change/").status_code == 200
