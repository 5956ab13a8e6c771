"""Claiming: which rows a relay takes next."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from outbox.claiming import CLAIM_SQL, claim_batch, record_failures
from outbox.models import OutboxMessage, OutboxPending
from outbox.publisher import Failure
from outbox.recording import record_event
from outbox.services import outbox_message_retry

from .helpers import make_payload

pytestmark = pytest.mark.django_db


def record_many(event_type, aggregates: list[str]) -> list[OutboxMessage]:
    with transaction.atomic():
        return [
            record_event(event_type, aggregate_id=a, payload=make_payload(a)) for a in aggregates
        ]


def test_claim_takes_only_leased_partitions_and_respects_the_limit(event_type):
    rows = record_many(event_type, [f"o-{n}" for n in range(30)])
    partition = rows[0].partition

    mine = claim_batch(partitions=[partition], limit=100)
    limited = claim_batch(partitions=range(16), limit=5)

    assert {m.partition for m in mine} == {partition}
    assert [m.id for m in limited] == sorted(m.id for m in rows)[:5]


def fail(rows: list[OutboxMessage], *, terminal: bool = False) -> None:
    """Record a failed attempt on ``rows``, as the relay does: they wait for a retry (or are
    parked, if ``terminal``)."""
    failures = [Failure(message=row, error="nack", terminal=terminal) for row in rows]
    record_failures(failures, max_attempts=5, backoff_base=60, backoff_max=60)


def claimed_ids(**kwargs) -> list[int]:
    return [row.id for row in claim_batch(partitions=range(16), limit=100, **kwargs)]


def test_a_row_waiting_for_a_retry_holds_back_the_later_rows_of_its_aggregate(event_type):
    first, second, third, other = record_many(event_type, ["a", "a", "a", "b"])
    fail([first])

    # While a#1 waits for its retry, a#2 and a#3 wait too; "b" is not held up
    assert claimed_ids() == [other.id]

    # Once its retry is due, a#1 comes first and its successors with it (id order)
    OutboxPending.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now())
    assert claimed_ids() == [first.id, second.id, third.id, other.id]


def test_a_retrying_row_holds_back_only_later_rows_of_its_aggregate(event_type):
    first, second, _third = record_many(event_type, ["a", "a", "a"])
    fail([first], terminal=True)
    fail([second])

    assert claimed_ids() == []  # a#1 is parked, a#3 waits for a#2
    # An earlier row of the aggregate made pending again (an operator's "retry now" of a parked
    # row) is not held back by a later one waiting for its retry
    assert outbox_message_retry(message_ids=[first.id]) == 1
    assert claimed_ids() == [first.id]


def test_a_row_never_attempted_is_due_whatever_its_next_attempt_at_says(event_type):
    # Given rows recorded while the database clock was ahead (it was set back since)
    first, second = record_many(event_type, ["a", "a"])
    ahead = timezone.now() + timedelta(hours=1)
    OutboxMessage.objects.update(next_attempt_at=ahead)
    OutboxPending.objects.update(next_attempt_at=ahead)

    # Then they are claimed, in order: a#1 can neither be skipped nor be overtaken by a#2
    assert claimed_ids() == [first.id, second.id]
    # ...while a row that failed an attempt waits for its retry time
    fail([first])
    assert claimed_ids() == []


def _plan(sql: str, params: dict) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_claim_checks_predecessors_per_row_not_with_an_anti_join():
    # Without fresh statistics PostgreSQL planned the anti-join as a nested loop without index
    # conditions (quadratic in the backlog); the query must keep a per-row subplan, a probe of
    # the (normally empty) index of retrying rows.
    plan = _plan(CLAIM_SQL, {"partitions": list(range(16)), "limit": 500, "exclude": [7]})

    assert "SubPlan" in plan
    assert "Anti Join" not in plan
    subplan = plan[plan.index("SubPlan") :]
    assert "outbox_pending_retrying_idx" in subplan
    assert "Index Cond" in subplan


@pytest.mark.parametrize("retrying", [0, 1, 400])
def test_the_predecessor_check_probes_the_retrying_rows_whatever_the_statistics_say(
    event_type, retrying
):
    # Statistics taken with none, one or every row retrying; the claim's plan stays the same
    rows = record_many(event_type, [f"o-{n % 100}" for n in range(400)])
    fail(rows[:retrying])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outbox_pending")
    OutboxPending.objects.update(attempts=0, next_attempt_at=timezone.now())

    plan = _plan(CLAIM_SQL, {"partitions": list(range(16)), "limit": 500, "exclude": []})

    subplan = plan[plan.index("SubPlan") :]
    assert "outbox_pending_retrying_idx" in subplan
    assert "Index Cond" in subplan
