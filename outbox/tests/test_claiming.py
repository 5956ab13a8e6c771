"""Claiming: which rows a relay takes next."""

import pytest
from django.db import connection, transaction

from outbox.claiming import CLAIM_SQL, claim_batch
from outbox.models import OutboxMessage
from outbox.recording import record_event

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


def test_claim_checks_predecessors_per_row_not_with_an_anti_join():
    # Without fresh statistics PostgreSQL planned the anti-join as a nested loop without index
    # conditions (quadratic in the backlog); the query must keep a per-row subplan.
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN " + CLAIM_SQL, {"partitions": list(range(16)), "limit": 500, "exclude": [7]}
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "SubPlan" in plan
    assert "Anti Join" not in plan
