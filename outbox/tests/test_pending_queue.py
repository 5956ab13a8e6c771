"""The relay's queue (outbox_pending): kept in step with the outbox rows, and a mark that writes
no index entry."""

import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from outbox.claiming import claim_batch, mark_published, record_failures
from outbox.models import OutboxMessage, OutboxPending
from outbox.publisher import Failure
from outbox.recording import record_event
from outbox.services import outbox_message_retry

from .helpers import make_payload

pytestmark = pytest.mark.django_db

BACKOFF = {"max_attempts": 5, "backoff_base": 60, "backoff_max": 60}


def record(event_type, *aggregates: str) -> list[OutboxMessage]:
    with transaction.atomic():
        return [
            record_event(event_type, aggregate_id=a, payload=make_payload(a)) for a in aggregates
        ]


def queued() -> dict[int, OutboxPending]:
    return {entry.id: entry for entry in OutboxPending.objects.all()}


def copy_of(row: OutboxMessage, **changes: object) -> OutboxMessage:
    """An unsaved row like ``row`` (another event of another aggregate), with ``changes``."""
    fields = {f.attname: getattr(row, f.attname) for f in OutboxMessage._meta.concrete_fields}
    fields.update(id=None, event_id=uuid.uuid4(), aggregate_id=str(uuid.uuid4()), **changes)
    return OutboxMessage(**fields)


def test_every_unpublished_row_inserted_is_queued_with_what_the_claim_filters_on(event_type):
    # given rows recorded by a producer
    first, second = record(event_type, "a", "a")
    # and rows inserted in bulk: one still to publish, one published and one parked already
    now = timezone.now()
    bulk = OutboxMessage.objects.bulk_create(
        [copy_of(first), copy_of(first, published_at=now), copy_of(first, parked_at=now)]
    )

    # then exactly the unpublished, unparked rows are in the queue, with their own columns
    entries = queued()
    assert set(entries) == {first.id, second.id, bulk[0].id}
    entry = entries[second.id]
    assert (entry.partition, entry.aggregate_type, entry.aggregate_id, entry.sequence) == (
        second.partition,
        "order",
        "a",
        2,
    )
    assert entry.attempts == 0


def update_counts() -> tuple[int, int]:
    """(rows updated, of which heap-only) in outbox_message by this session, not yet reported.

    Read twice in one transaction: the counts may include earlier transactions of the session
    whose statistics were not flushed yet (PostgreSQL sends them at most once a second).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables"
            " WHERE relname = 'outbox_message'"
        )
        return cursor.fetchone()


@pytest.mark.django_db(transaction=True)
def test_the_mark_dequeues_and_is_a_heap_only_update(event_type):
    # given rows claimed by the relay, on pages written at the table's fillfactor (VACUUM: no
    # dead rows of earlier tests taking the room a page keeps for the rows' second versions)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM outbox_message")
    rows = record(event_type, *[f"o-{n}" for n in range(20)])
    claimed = claim_batch(partitions=range(16), limit=100)
    assert [c.id for c in claimed] == [r.id for r in rows]

    with transaction.atomic():
        # when they are marked published
        before = update_counts()
        assert mark_published(claimed) == 20

        # then the UPDATE wrote no index entry: every row's new version is heap-only (HOT)
        after = update_counts()
        assert (after[0] - before[0], after[1] - before[1]) == (20, 20)
    # and they left the queue and are published
    assert queued() == {}
    assert OutboxMessage.objects.filter(published_at__isnull=False).count() == 20
    # and a second mark (after a duplicate publish) changes nothing
    assert mark_published(claimed) == 0


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_the_mark_commits_without_waiting_for_the_wal_flush_and_only_its_own_transaction(
    event_type,
):
    # given two rows claimed by the relay
    record(event_type, "a", "b")
    first, second = claim_batch(partitions=range(16), limit=100)
    assert synchronous_commit() == "on"

    # when a row is marked inside a transaction, that transaction commits without waiting
    with transaction.atomic():
        assert mark_published([first]) == 1
        assert synchronous_commit() == "off"
    # and the session's setting is untouched afterwards
    assert synchronous_commit() == "on"

    # when the relay's recorder marks in autocommit, the mark is its own transaction, and the
    # session's setting is untouched too
    assert mark_published([second]) == 1
    assert synchronous_commit() == "on"
    assert OutboxMessage.objects.filter(published_at__isnull=False).count() == 2


def test_no_index_of_the_outbox_refers_to_the_columns_the_mark_changes():
    # An index on published_at or attempts (or with them in its WHERE) would make every mark
    # write an entry in every index of the table again.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'outbox_message'"
        )
        indexes = dict(cursor.fetchall())
    assert "outbox_message_pkey" in indexes
    offending = {n: d for n, d in indexes.items() if "published_at" in d or "attempts" in d}
    assert offending == {}


def test_failures_update_the_queue_and_parking_removes_the_row_from_it(event_type):
    retried, parked = record(event_type, "a", "b")

    record_failures(
        [Failure(message=retried, error="nack"), Failure(message=parked, error="x", terminal=True)],
        max_attempts=5,
        backoff_base=60,
        backoff_max=60,
    )

    # the retried row waits in the queue with the row's own attempt count and retry time
    entries = queued()
    assert set(entries) == {retried.id}
    row = OutboxMessage.objects.get(pk=retried.pk)
    assert (entries[retried.id].attempts, entries[retried.id].next_attempt_at) == (
        row.attempts,
        row.next_attempt_at,
    )
    assert row.attempts == 1 and row.next_attempt_at > timezone.now()
    # the parked row is out of it, and "retry now" puts it back, due now, with a fresh budget
    assert OutboxMessage.objects.get(pk=parked.pk).parked_at is not None
    assert outbox_message_retry(message_ids=[parked.id]) == 1
    entry = queued()[parked.id]
    assert entry.attempts == 0 and entry.next_attempt_at <= timezone.now()
    assert [c.id for c in claim_batch(partitions=range(16), limit=10)] == [parked.id]


def leave_stale_entries(event_type) -> tuple[list[OutboxMessage], OutboxMessage]:
    """Queue entries left behind (a relay of the previous release published or parked these
    rows, an operator deleted one), before one row still to publish."""
    published, parked, deleted, pending = record(event_type, "a", "b", "c", "d")
    OutboxMessage.objects.filter(pk=published.pk).update(published_at=timezone.now())
    OutboxMessage.objects.filter(pk=parked.pk).update(parked_at=timezone.now())
    OutboxMessage.objects.filter(pk=deleted.pk).delete()
    return [published, parked, deleted], pending


def test_stale_queue_entries_are_never_claimed_and_take_no_place_in_a_batch(event_type):
    _, pending = leave_stale_entries(event_type)

    # then a batch of one brings the row still to publish, not a stale entry
    assert [c.id for c in claim_batch(partitions=range(16), limit=1)] == [pending.id]


def test_prune_drops_stale_entries_and_the_repair_command_queues_missing_rows(event_type):
    _, pending = leave_stale_entries(event_type)
    # and a pending row missing from the queue (un-parked by a previous release's "retry now")
    (forgotten,) = record(event_type, "e")
    OutboxPending.objects.filter(pk=forgotten.pk).delete()

    # when pruned, the stale entries go (and nothing else)
    out = StringIO()
    call_command("prune_outbox", "--older-than", "30d", stdout=out)
    assert set(queued()) == {pending.id}
    # when repaired, the missing row is queued again, due now
    call_command("repair_outbox_queue", stdout=out)
    assert set(queued()) == {pending.id, forgotten.id}
    assert "1 pending rows queued, 0 stale entries dropped" in out.getvalue()
    assert [c.id for c in claim_batch(partitions=range(16), limit=10)] == [pending.id, forgotten.id]


def test_a_late_failure_report_leaves_a_parked_row_parked(event_type):
    # given a row parked by one relay
    (row,) = record(event_type, "a")
    record_failures([Failure(message=row, error="too large", terminal=True)], **BACKOFF)
    parked_at = OutboxMessage.objects.get(pk=row.pk).parked_at
    # when another relay reports a retryable failure of it (a partition changed hands)
    outcomes = record_failures([Failure(message=row, error="nack")], **BACKOFF)
    # then nothing changes: still parked, out of the queue
    assert outcomes == []
    assert OutboxMessage.objects.get(pk=row.pk).parked_at == parked_at
    assert queued() == {}


def test_a_failure_of_a_row_missing_from_the_queue_queues_it(event_type):
    (row,) = record(event_type, "a")
    OutboxPending.objects.filter(pk=row.pk).delete()

    record_failures([Failure(message=row, error="nack")], **BACKOFF)

    assert queued()[row.id].attempts == 1
