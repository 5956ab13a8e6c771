"""``manage.py relay_outbox`` as a real process: crashes, signals, two relays, a lost broker."""

import json
import random
import re
import signal
import threading
import time
import uuid
from urllib.parse import urlparse

import pytest
from django.db import connection, transaction

from outbox.conf import get_settings
from outbox.leases import LOCK_NAMESPACE, PRESENCE_KEY
from outbox.models import OutboxMessage
from outbox.partitioning import partition_for
from outbox.recording import record_event
from outbox.tests.processes import RelayProcess

from .helpers import (
    TcpProxy,
    bind_queue,
    get_messages,
    make_payload,
    partitions_by_relay,
    sequences_by_subject,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


def record(event_type, aggregate_id: str) -> OutboxMessage:
    with transaction.atomic():
        payload = make_payload(aggregate_id)
        return record_event(event_type, aggregate_id=aggregate_id, payload=payload)


def pending_count() -> int:
    return OutboxMessage.objects.filter(published_at__isnull=True).count()


def relay_backends() -> list[int]:
    """The running relay's sessions: the one holding a presence lock, and its LISTEN session."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s"
            " AND objid::bigint = %s"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " UNION SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%%'",
            [LOCK_NAMESPACE, PRESENCE_KEY],
        )
        return [row[0] for row in cursor.fetchall()]


def test_relay_killed_between_publish_and_mark_publishes_again(event_type, broker, tmp_path):
    # Given a relay that will be killed after the broker confirmed, before it marks the row
    queue = bind_queue(broker, event_type.exchange)
    row = record(event_type, "o-1")
    relay = RelayProcess(tmp_path, OUTBOX_TEST_PAUSE_AFTER_PUBLISH="60")
    try:
        first = get_messages(broker, queue, 1, timeout=20)
        relay.wait_for_log("OUTBOX_TEST_PAUSE_AFTER_PUBLISH")
        relay.signal(signal.SIGKILL)
        assert relay.wait() == -signal.SIGKILL
    finally:
        relay.stop()
    row.refresh_from_db()
    assert len(first) == 1 and row.published_at is None

    # When a relay starts again (once the dead session's leases are gone)
    wait_for(lambda: not partitions_by_relay(), what="the killed relay's locks to go")
    restarted = RelayProcess(tmp_path, "--once")
    try:
        assert restarted.wait() == 0, restarted.log
    finally:
        restarted.stop()

    # Then the event is published again, a duplicate with the same message_id: never lost
    second = get_messages(broker, queue, 1, timeout=5)
    ids = [m.properties["message_id"] for m in first + second]
    assert ids == [str(row.event_id)] * 2
    row.refresh_from_db()
    assert row.state == OutboxMessage.State.PUBLISHED


def test_relay_wakes_on_notify_and_stops_cleanly_on_sigterm(event_type, broker, tmp_path):
    # Given a running relay that would only poll once a minute
    queue = bind_queue(broker, event_type.exchange)
    relay = RelayProcess(tmp_path, OUTBOX_POLL_INTERVAL="60")
    try:
        relay.wait_for_log("leased partitions")

        # When an event commits, the NOTIFY wakes it: published long before the next poll
        row = record(event_type, "o-1")
        messages = get_messages(broker, queue, 1, timeout=5)
        assert [m.properties["message_id"] for m in messages] == [str(row.event_id)]

        # And SIGTERM stops it with exit code 0, its leases given back
        relay.signal(signal.SIGTERM)
        assert relay.wait(timeout=10) == 0
    finally:
        relay.stop()
    assert "relay stopped, 1 events published" in relay.log
    assert partitions_by_relay() == {}


def test_two_relays_share_partitions_and_keep_order_per_aggregate(event_type, broker, tmp_path):
    # Given two relays running at once
    queue = bind_queue(broker, event_type.exchange)
    relays = [RelayProcess(tmp_path, "--batch-size", "20") for _ in range(2)]
    try:
        wait_for(
            lambda: sorted(len(p) for p in partitions_by_relay().values()) == [8, 8],
            what="the two relays to lease 8 partitions each",
        )

        # When four writers commit interleaved events for 40 aggregates
        errors: list[BaseException] = []

        def writer(seed: int) -> None:
            rng = random.Random(seed)
            try:
                for _ in range(30):
                    # Sorted, as a transaction touching several aggregates should lock them:
                    # each one's sequence row stays locked until commit.
                    aggregates = sorted({f"o-{rng.randrange(40)}" for _ in range(3)})
                    with transaction.atomic():
                        for aggregate in aggregates:
                            record_event(
                                event_type, aggregate_id=aggregate, payload=make_payload(aggregate)
                            )
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        total = OutboxMessage.objects.count()
        wait_for(lambda: pending_count() == 0, timeout=30, what="every row to be published")
    finally:
        for relay in relays:
            relay.stop()

    # Then every event arrived exactly once, each aggregate's in sequence order
    messages = get_messages(broker, queue, total, timeout=10)
    assert len(messages) == total
    assert get_messages(broker, queue, 1, timeout=0.2) == []
    for aggregate, seen in sequences_by_subject(messages).items():
        assert seen == list(range(1, len(seen) + 1)), aggregate
    # And both relays did part of the work
    for relay in relays:
        counts = re.findall(r"batch: \d+ claimed, (\d+) published", relay.log)
        assert sum(map(int, counts)) > 0, relay.log


def test_a_pinned_relay_next_to_a_default_one_leaves_no_partition_waiting(
    event_type, broker, tmp_path
):
    # Given a relay leasing every partition
    queue = bind_queue(broker, event_type.exchange)
    relays = [RelayProcess(tmp_path)]
    try:
        wait_for(
            lambda: [len(p) for p in partitions_by_relay().values()] == [16],
            what="the first relay to lease all 16 partitions",
        )

        # When a relay pinned to 0-3 starts next to it
        relays.append(RelayProcess(tmp_path, "--partitions", "0-3"))

        # Then the first hands 0-3 over and keeps the 12 only it may take
        wait_for(
            lambda: sorted(partitions_by_relay().values()) == [[0, 1, 2, 3], list(range(4, 16))],
            what="0-3 and 4-15 to be leased by one relay each",
        )
        # And an event of each partition is published
        rows = [record(event_type, aggregate) for aggregate in one_per_partition(event_type)]
        messages = get_messages(broker, queue, len(rows), timeout=10)
    finally:
        for relay in relays:
            relay.stop()
    assert sorted(m.properties["message_id"] for m in messages) == sorted(
        str(row.event_id) for row in rows
    )


def one_per_partition(event_type) -> list[str]:
    """Aggregate ids whose events of ``event_type`` land one in each partition."""
    partitions = get_settings().partitions
    by_partition: dict[int, str] = {}
    for aggregate in (f"o-{number}" for number in range(10 * partitions)):
        partition = partition_for(event_type.aggregate_type, aggregate, partitions)
        by_partition.setdefault(partition, aggregate)
    assert len(by_partition) == partitions
    return list(by_partition.values())


def test_relay_catches_up_after_the_broker_was_unreachable(event_type, broker, tmp_path):
    # Given a relay whose broker cannot be reached (nothing listens on the proxy's port yet)
    queue = bind_queue(broker, event_type.exchange)
    proxy = TcpProxy(("127.0.0.1", 5672))
    vhost = urlparse(get_settings().broker_url).path  # the tests' virtual host
    relay = RelayProcess(
        tmp_path, OUTBOX_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}{vhost}"
    )
    try:
        relay.wait_for_log("connection problem")
        rows = [record(event_type, f"o-{n}") for n in range(20)]
        assert get_messages(broker, queue, 1, timeout=0.5) == []

        # When the broker becomes reachable, the backlog is published
        proxy.start()
        wait_for(lambda: pending_count() == 0, what="the backlog to drain")
        first = get_messages(broker, queue, 20)

        # And when the connection is cut under the running relay, it reconnects and goes on
        problems_before = relay.log.count("connection problem")
        proxy.stop()
        rows += [record(event_type, f"o-late-{n}") for n in range(10)]
        wait_for(lambda: relay.log.count("connection problem") > problems_before, what="a retry")
        assert pending_count() == 10
        proxy.start()
        wait_for(lambda: pending_count() == 0, what="the rows recorded during the outage")
        second = get_messages(broker, queue, 10)
    finally:
        relay.stop()
        proxy.stop()

    # Then nothing was lost (a duplicate would be allowed; ids are what count)
    received = {m.properties["message_id"] for m in first + second}
    assert received == {str(row.event_id) for row in rows}
    assert {json.loads(m.body)["order_id"] for m in second} == {f"o-late-{n}" for n in range(10)}


def test_relay_reconnects_after_losing_its_database_sessions(event_type, broker, tmp_path):
    # Given a running relay whose database sessions (work and LISTEN) are killed
    queue = bind_queue(broker, event_type.exchange)
    relay = RelayProcess(tmp_path)
    try:
        relay.wait_for_log("leased partitions")
        relay_pids = relay_backends()
        assert len(relay_pids) == 2
        with connection.cursor() as cursor:
            for pid in relay_pids:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

        # When an event commits afterwards, it is still published (after reconnecting)
        row = record(event_type, "o-1")
        messages = get_messages(broker, queue, 1, timeout=15)
    finally:
        relay.stop()
    assert [m.properties["message_id"] for m in messages] == [str(row.event_id)]
    assert "connection problem" in relay.log


def test_relay_stops_on_sigterm_while_the_broker_stops_reading(event_type, broker, tmp_path):
    # Given a running relay whose broker stops reading (a memory or disk alarm) while a row
    # waits for its confirm
    queue = bind_queue(broker, event_type.exchange)
    proxy = TcpProxy(("127.0.0.1", 5672))
    proxy.start()
    vhost = urlparse(get_settings().broker_url).path
    relay = RelayProcess(
        tmp_path,
        OUTBOX_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}{vhost}",
        OUTBOX_CONFIRM_TIMEOUT="1",
    )
    try:
        relay.wait_for_log("leased partitions")
        first = record(event_type, "o-1")
        got = get_messages(broker, queue, 1)
        assert [m.properties["message_id"] for m in got] == [str(first.event_id)]
        proxy.frozen.set()
        record(event_type, "o-2")

        # When SIGTERM comes after the confirm timeout (the relay gives the connection up)
        time.sleep(2)
        relay.signal(signal.SIGTERM)

        # Then it stops at once, cleanly, instead of waiting forever for the broker's close-ok
        assert relay.wait(timeout=10) == 0
    finally:
        proxy.frozen.clear()
        relay.stop()
        proxy.stop()
    assert "no confirm within 1.0s" in relay.log
    assert "relay stopped, 1 events published" in relay.log


def test_a_database_restart_costs_one_reconnect_and_no_duplicate(event_type, broker, tmp_path):
    # Given a running relay that has published (so its recorder thread has a session too),
    # its sessions named so the test can find all three
    queue = bind_queue(broker, event_type.exchange)
    name = f"relay-{uuid.uuid4().hex[:8]}"
    relay = RelayProcess(tmp_path, PGAPPNAME=name)
    try:
        first = record(event_type, "o-1")
        wait_for(lambda: pending_count() == 0, what="the first row marked published")
        assert [m.properties["message_id"] for m in get_messages(broker, queue, 1)] == [
            str(first.event_id)
        ]

        # When PostgreSQL ends every session of the relay (a restart, for the relay)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = %s",
                [name],
            )
            assert len(cursor.fetchall()) == 3  # working, LISTEN and recorder sessions
        second = record(event_type, "o-2")
        wait_for(lambda: pending_count() == 0, what="the second row marked published")
        messages = get_messages(broker, queue, 3, timeout=1)
    finally:
        relay.stop()

    # Then the relay reconnected once, and published the row committed meanwhile once (nothing
    # was in flight or waiting for its mark when the sessions ended: no duplicate is due)
    assert relay.log.count("connection problem, reconnecting") == 1, relay.log
    assert [m.properties["message_id"] for m in messages] == [str(second.event_id)]
