"""Replay's aggregate filter finds its rows through an index, however long the retained log."""

import json

import pytest
from django.db import connection, transaction

from outbox.models import OutboxMessage
from outbox.recording import record_event
from outbox.replay import ReplayFilters

from .helpers import index_reads, make_payload

pytestmark = pytest.mark.django_db


def _record(event_type, *aggregate_ids: str) -> None:
    with transaction.atomic():
        for aggregate_id in aggregate_ids:
            record_event(event_type, aggregate_id=aggregate_id, payload=make_payload())


def _selected(*aggregates: str) -> set[str]:
    rows = ReplayFilters(aggregates=aggregates).apply(OutboxMessage.objects.all())
    return {f"{row.aggregate_type}:{row.aggregate_id}" for row in rows}


def test_a_bare_id_selects_that_id_in_every_aggregate_type_and_a_typed_one_only_its_type(
    make_event_type,
):
    # given the same id in two aggregate types, and another id
    order, payment = make_event_type(), make_event_type(aggregate_type="payment")
    _record(order, "7", "8")
    _record(payment, "7")

    assert _selected("7") == {"order:7", "payment:7"}
    assert _selected("payment:7") == {"payment:7"}
    assert _selected("8", "payment:7") == {"order:8", "payment:7"}
    assert _selected("70") == set()


@pytest.mark.parametrize("aggregates", [("7",), ("order:7",), ("7", "payment:8")])
def test_the_aggregate_filter_is_served_by_the_unique_index(event_type, aggregates):
    _record(event_type, "7")
    queryset = ReplayFilters(aggregates=aggregates).apply(OutboxMessage.objects.all())

    # planned with sequential scans priced out (a tiny test table would be read whole anyway):
    # an index probe by the index's leading column, not a walk through the whole index
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = json.loads(queryset.explain(format="json"))[0]["Plan"]
        reads = index_reads(cursor, plan)

    assert reads and [r for r in reads if not r.by_leading_column] == []
