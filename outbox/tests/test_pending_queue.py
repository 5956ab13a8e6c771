"""The relay's queue (outbox_pending): kept in step with the outbox rows, and a mark that writes
no index entry."""

import uuid

import pytest
from django.db import connection, transaction
from django.utils import timezone

from outbox.claiming import claim_batch, mark_published, record_failures
from outbox.models import OutboxMessage, OutboxPending
from outbox.publisher import Failure
from outbox.recording import record_event
from outbox.services import outbox_message_retry

from .helpers import make_payload

pytestmark = pytest.mark.django_db


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


def test_a_queue_entry_of_a_row_published_or_parked_elsewhere_is_never_claimed(event_type):
    # given queue entries left behind (a relay of the previous release marked these rows)
    published, parked, pending = record(event_type, "a", "b", "c")
    OutboxMessage.objects.filter(pk=published.pk).update(published_at=timezone.now())
    OutboxMessage.objects.filter(pk=parked.pk).update(parked_at=timezone.now())

    # then only the row still to publish is claimed
    assert [c.id for c in claim_batch(partitions=range(16), limit=10)] == [pending.id]
