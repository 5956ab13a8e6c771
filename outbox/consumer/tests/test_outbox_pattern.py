"""Coming from django-outbox-pattern: its pending rows imported, its messages accepted once.

Its side is the real package (rows through its model, messages from its ``publish`` command over
RabbitMQ's STOMP plugin), ours the real relay and worker; see outbox_pattern_peer.
"""

import json
import signal
import uuid
from io import StringIO

import amqp
import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from outbox.consumer.models import InboxEntry
from outbox.consumer.tests.conftest import consumer_db, run_worker
from outbox.consumer.tests.outbox_pattern_peer import (
    Publisher,
    peer_create,
    peer_pending,
)
from outbox.consumer.tests.support import (
    bed_worker,
    get_all,
    publish,
    queue_depth,
)
from outbox.models import OutboxMessage
from outbox.relay import Relay
from outbox.tests.helpers import database_url, wait_for

pytestmark = consumer_db


def destination(bed) -> str:
    """Where its producer would send the bed's ``placed`` events."""
    return f"/exchange/{bed.exchange}/{bed.placed.type}"


def placed(bed, order_id: str) -> dict:
    return {"destination": destination(bed), "body": {"order_id": order_id, "total": "10.00"}}


def import_rows(*args: str) -> str:
    out = StringIO()
    call_command("import_outbox_pattern", *args, stdout=out)
    return out.getvalue()


def statuses(ids: list[str]) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id::text, status FROM published WHERE id::text = ANY(%s)", [ids])
        found = dict(cursor.fetchall())
    return [found[i] for i in ids]


def test_import_publishes_each_scheduled_row_once_with_its_id_and_reports_the_rest(
    bed, outbox_pattern
):
    # Given rows written through django-outbox-pattern's own model: three scheduled, one expired,
    # one its publisher gave up on, one sent to a plain queue (no event type to read)
    scheduled = peer_create(outbox_pattern, [placed(bed, f"o-{n}") for n in range(3)])
    expired, failed, to_queue = peer_create(
        outbox_pattern,
        [
            {**placed(bed, "o-expired"), "state": "expired"},
            {**placed(bed, "o-failed"), "state": "failed"},
            {"destination": "/queue/legacy", "body": {"order_id": "o-q", "total": "1.00"}},
        ],
    )

    # When a dry run looks first, then the import and our relay run
    dry = import_rows("--dry-run")
    assert "would move 3 events" in dry
    assert OutboxMessage.objects.count() == 0 and peer_pending(outbox_pattern) == 4
    report = import_rows()
    assert Relay(once=True).run() == 3

    # Then each scheduled row reached the service's queue exactly once, with its original id
    messages = get_all(bed.service.queue_name, expect=4, timeout=1.0)
    assert sorted(m.properties["message_id"] for m in messages) == sorted(scheduled)
    by_id = {m.properties["message_id"]: m for m in messages}
    with connection.cursor() as cursor:
        cursor.execute("SELECT id::text, headers, body FROM published")
        rows = {row_id: (json.loads(h), json.loads(b)) for row_id, h, b in cursor.fetchall()}
    for row_id in scheduled:
        headers = by_id[row_id].properties["application_headers"]
        assert headers["ce-type"] == bed.placed.type
        assert headers["dop-msg-id"] == row_id
        assert headers["ce-correlationid"] == rows[row_id][0]["dop-correlation-id"]
        assert json.loads(by_id[row_id].body) == rows[row_id][1]
    # and its publisher will not send them (its own queryset finds only the unmappable row),
    # while the expired, failed and unmappable rows were reported, not sent
    assert statuses(scheduled) == [3, 3, 3]
    assert peer_pending(outbox_pattern) == 1
    assert statuses([expired, failed, to_queue]) == [1, -1, 1]
    assert "moved 3 events" in report
    assert (
        f"skipped 1: expired: its publisher never sends a row past expires_at (e.g. {expired})"
        in report
    )
    assert f"skipped 1: failed: its publisher gave up on it (e.g. {failed})" in report
    assert f"'/queue/legacy' is not /exchange/<exchange>/<routing key> (e.g. {to_queue})" in report

    # And running it again moves nothing twice
    again = import_rows()
    assert "moved 0 events" in again and "3 moved by an earlier import" in again
    assert Relay(once=True).run() == 0
    assert OutboxMessage.objects.count() == 3


def test_event_sent_by_its_publish_command_and_by_our_relay_is_applied_once(
    bed, outbox_pattern, settings, tmp_path
):
    # Given a service that accepts django-outbox-pattern's messages during the switch-over
    settings.OUTBOX_CONSUMER_ACCEPT_OUTBOX_PATTERN = [bed.service.name]
    [row_id] = peer_create(outbox_pattern, [placed(bed, "o-1")])

    # When its own publish command sends the event over STOMP...
    publisher = Publisher(outbox_pattern, tmp_path / "publish.log")
    try:
        with connection.cursor() as cursor:
            publisher.wait_until_sent(cursor, [row_id])
    finally:
        publisher.stop()
    # ...and the row is still scheduled, as its crash before the commit at the end of its pass
    # leaves a row it already sent, so the import moves it and our relay sends it as well
    with connection.cursor() as cursor:
        cursor.execute("UPDATE published SET status = 1 WHERE id = %s", [row_id])
    assert "moved 1 events" in import_rows()
    assert Relay(once=True).run() == 1
    wait_for(lambda: queue_depth(bed.service.queue_name) == 2, what="both copies queued")

    # Then the service applies it once: its copy first, ours recognised as the same event
    stats = run_worker(bed)
    assert [call.id for call in bed.calls] == [uuid.UUID(row_id)]
    assert bed.calls[0].outbox_pattern and bed.calls[0].payload == {
        "order_id": "o-1",
        "total": "10.00",
    }
    assert stats["handled"] == 1 and stats["duplicate"] == 1
    assert InboxEntry.objects.filter(service=bed.service.name, event_id=row_id).count() == 1


def test_import_interrupted_half_way_and_run_again_loses_and_duplicates_nothing(
    bed, outbox_pattern, tmp_path
):
    # Given six scheduled rows, the fourth held by another transaction (as its publisher holds a
    # row while it sends it)
    ids = peer_create(outbox_pattern, [placed(bed, f"o-{n}") for n in range(6)])
    holder = psycopg.connect(database_url())
    holder.execute("SELECT 1 FROM published WHERE id = %s FOR UPDATE", [ids[3]])
    holder_pid = holder.info.backend_pid

    # When the import, in batches of two, committed its first batch, is stuck in its second and
    # is killed there
    importer = bed_worker(tmp_path, bed, "import_outbox_pattern", "--batch-size", "2")
    try:
        blocked = wait_for(lambda: _blocked_by(holder_pid), what="the second batch")
        importer.signal(signal.SIGKILL)
        importer.wait(10)
        # What PostgreSQL does once it notices the client is gone: the open batch rolls back.
        holder.execute("SELECT pg_terminate_backend(%s)", [blocked])
    finally:
        importer.stop(signal.SIGKILL)
        holder.rollback()
        holder.close()
    wait_for(lambda: not _backend_alive(blocked), what="the killed importer's session to end")
    assert OutboxMessage.objects.count() == 2
    assert statuses(ids) == [3, 3, 1, 1, 1, 1]
    assert Relay(once=True).run() == 2  # the relay publishes the committed batch meanwhile

    # And the import runs again, then the relay
    assert "moved 4 events" in import_rows()
    assert Relay(once=True).run() == 4

    # Then every row was published exactly once, with its own id
    messages = get_all(bed.service.queue_name, expect=7, timeout=1.0)
    assert sorted(m.properties["message_id"] for m in messages) == sorted(ids)
    assert statuses(ids) == [3] * 6


@pytest.mark.parametrize(
    ("accept", "headers", "reason"),
    [
        (True, {"dop-msg-id": "not-a-uuid"}, "dop-msg-id 'not-a-uuid' is not a UUID"),
        (True, {}, "no dop-msg-id header"),
        (False, {"dop-msg-id": str(uuid.uuid4())}, "does not accept them"),
    ],
)
def test_its_message_without_a_usable_id_or_not_accepted_is_dead_lettered_with_the_reason(
    bed, settings, accept, headers, reason
):
    # Given a message shaped as django-outbox-pattern's arrive over AMQP (no content type,
    # dop-* headers, raw JSON body)
    settings.OUTBOX_CONSUMER_ACCEPT_OUTBOX_PATTERN = [bed.service.name] if accept else []
    message = amqp.Message(
        json.dumps({"order_id": "o-1", "total": "10.00"}).encode(),
        application_headers={
            "dop-msg-destination": destination(bed),
            "dop-correlation-id": "c-1",
            **headers,
        },
    )
    publish(message, exchange=bed.exchange, routing_key=bed.placed.type)

    # When the worker runs
    stats = run_worker(bed)

    # Then it is not applied, and its dead-letter copy says why
    assert bed.calls == [] and stats["dead"] == 1
    [dead] = get_all(bed.service.dead_letter_queue)
    assert reason in dead.properties["application_headers"]["x-death-reason"]


def _blocked_by(pid: int) -> int | None:
    """The session waiting for a lock ``pid`` holds (read outside ``pid``'s transaction, whose
    view of pg_stat_activity is a snapshot)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [pid]
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() is not None


def test_import_without_a_signing_key_for_the_source_stops_and_writes_nothing(
    bed, outbox_pattern, settings
):
    # Given a scheduled row, and a process that has no signing key for the events' source
    [row_id] = peer_create(outbox_pattern, [placed(bed, "o-1")])
    settings.OUTBOX_SOURCE = "unkeyed-source"

    # When the import runs, then it stops with the reason
    with pytest.raises(CommandError, match="unkeyed-source"):
        import_rows()

    # And nothing was moved: the row is still its publisher's, our outbox is empty
    assert statuses([row_id]) == [1] and OutboxMessage.objects.count() == 0


def test_a_row_dated_ahead_of_our_clock_is_reported_and_stays_scheduled(bed, outbox_pattern):
    # Given three scheduled rows, two of which their producer dated ahead (a clock far ahead)
    on_time, ahead, also_ahead = peer_create(
        outbox_pattern, [placed(bed, "o-1"), placed(bed, "o-2"), placed(bed, "o-3")]
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE published SET added = now() + interval '1 day' + random() * interval '1 hour'"
            " WHERE id::text IN (%s, %s)",
            [ahead, also_ahead],
        )

    # When the import runs
    report = import_rows()

    # Then the other row is moved, and this one is reported with the reason and left to a later run
    assert "moved 1 events" in report
    # (counted under one reason, though each row is dated differently)
    (line,) = [line for line in report.splitlines() if "OUTBOX_MAX_FUTURE_SKEW=300 s" in line]
    assert "skipped 2" in line and ahead in line and also_ahead in line
    assert statuses([on_time, ahead, also_ahead]) == [3, 1, 1]
    assert list(OutboxMessage.objects.values_list("event_id", flat=True)) == [uuid.UUID(on_time)]
