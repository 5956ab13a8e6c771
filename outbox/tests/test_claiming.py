"""Claiming: which rows a relay takes next."""

import json
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from outbox.claiming import CLAIM_SQL, _headers, claim_batch, claim_params, record_failures
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


def test_claim_leaves_out_the_aggregates_it_is_told_to_and_brings_them_later_in_order(
    event_type,
):
    # Given a burst of one aggregate recorded before another aggregate's row
    hot = record_many(event_type, ["hot"] * 5)
    cold, later = record_many(event_type, ["cold", "hot"])
    aggregate = (hot[0].aggregate_type, "hot")

    # When the relay holds the first two and leaves the aggregate out, the claim passes over
    # its backlog (even with a limit its rows would fill) to the other aggregate's row
    held = [hot[0].id, hot[1].id]
    assert claimed_ids(exclude=held, exclude_aggregates=[aggregate]) == [cold.id]
    assert [
        r.id
        for r in claim_batch(
            partitions=range(16), limit=1, exclude=held, exclude_aggregates=[aggregate]
        )
    ] == [cold.id]

    # Then, no longer left out, its rows not held come in order, none skipped
    assert claimed_ids(exclude=held) == [*(r.id for r in hot[2:]), cold.id, later.id]


# A claim as the relay makes it: rows held in memory, and aggregates left out
RELAY_CLAIM = claim_params(
    partitions=range(16), limit=500, exclude=[7], exclude_aggregates=[("order", "o-1")]
)


def test_claim_checks_predecessors_per_row_not_with_an_anti_join():
    # Without fresh statistics PostgreSQL planned the anti-join as a nested loop without index
    # conditions (quadratic in the backlog); the query must keep a per-row subplan, a probe of
    # the (normally empty) index of retrying rows. The aggregates left out are one hash probe
    # per row (a hashed subplan), never an anti-join either (it would not stop at the LIMIT).
    plan = _plan(CLAIM_SQL, RELAY_CLAIM)

    assert "hashed SubPlan" in plan
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

    plan = _plan(CLAIM_SQL, claim_params(partitions=range(16), limit=500))

    subplan = plan[plan.index("SubPlan") :]
    assert "outbox_pending_retrying_idx" in subplan
    assert "Index Cond" in subplan


# What PostgreSQL's jsonb text form of the extra headers looks like, and texts it never gives
# (the decoder must still agree with json.loads, or fail the same way).
HEADER_TEXTS = [
    "{}",
    '{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", '
    '"x-outbox-key-id": "monolith-2026-11", "x-outbox-signature": "v1=3f9a"}',
    '{"n": 1, "t": true, "x": null, "big": 1099511627776, "ratio": 0.5, "nested": {"a": [1]}}',
    '{"q": "a \\"quoted\\" \\\\ value", "u": "caf\\u00e9 \\ud83d\\ude00", "lone": "\\udfff"}',
    '{"grüße": "☕"}',
    '{"a": 1, "a": 2}',
    ' {"a": 1}',
    '{"a": 1} ',
    '{"a": 1}\n',
    "[1, 2]",
    "null",
    '"text"',
]


@pytest.mark.parametrize("text", HEADER_TEXTS)
def test_extra_headers_are_decoded_like_json_loads(text):
    assert _headers(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "{", '{"a": 1', '{"a": 1}x', '{"a": 1} {}', "{'a': 1}"])
def test_extra_headers_that_are_not_json_fail_like_json_loads(text):
    with pytest.raises(json.JSONDecodeError) as ours:
        _headers(text)
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert str(ours.value) == str(theirs.value)


def test_claimed_rows_carry_their_extra_headers_as_recorded(event_type):
    headers = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "x-note": 'a "quoted" café ☕ \\ value',
        "x-count": 3,
    }
    with transaction.atomic():
        plain = record_event(event_type, aggregate_id="h-1", payload=make_payload("h-1"))
        extra = record_event(
            event_type, aggregate_id="h-2", payload=make_payload("h-2"), headers=headers
        )
    expected = {
        row.id: row.headers for row in OutboxMessage.objects.filter(id__in=[plain.id, extra.id])
    }

    claimed = claim_batch(partitions=range(16), limit=10)

    assert {row.id: row.headers for row in claimed} == expected
    assert expected[extra.id].items() >= headers.items()
