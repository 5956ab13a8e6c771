"""The outbox admin: readable rows, filters by state and type, id search, and "retry now"."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from outbox.models import OutboxMessage
from outbox.recording import record_event
from outbox.registry import EventType

from .helpers import index_reads, make_payload

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:outbox_outboxmessage_changelist"


@pytest.fixture
def rows(event_type) -> dict[str, OutboxMessage]:
    with transaction.atomic():
        made = {
            name: record_event(event_type, aggregate_id=name, payload=make_payload(name))
            for name in ("pending", "published", "parked")
        }
    now = timezone.now()
    OutboxMessage.objects.filter(id=made["published"].id).update(published_at=now)
    OutboxMessage.objects.filter(id=made["parked"].id).update(
        parked_at=now, attempts=10, last_error="unroutable: NO_ROUTE"
    )
    return made


@pytest.mark.parametrize("state", ["pending", "published", "parked"])
def test_changelist_filters_by_state(admin_client, rows, state):
    response = admin_client.get(reverse(CHANGELIST), {"state": state})

    assert response.status_code == 200
    shown = {row.aggregate_id for row in response.context["cl"].result_list}
    assert shown == {state}


def test_changelist_filters_by_type(admin_client, rows, event_type):
    response = admin_client.get(reverse(CHANGELIST), {"type": event_type.type})

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 3
    assert event_type.type in response.content.decode()


def test_detail_shows_payload_and_headers_read_only(admin_client, rows):
    row = rows["parked"]
    url = reverse("admin:outbox_outboxmessage_change", args=[row.id])

    response = admin_client.get(url)

    html = response.content.decode()
    assert response.status_code == 200
    assert "&quot;order_id&quot;: &quot;parked&quot;" in html  # pretty JSON, escaped
    assert "unroutable: NO_ROUTE" in html
    assert 'name="payload"' not in html  # no editable field


def test_retry_now_unparks_only_parked_rows(admin_client, rows):
    selected = [rows["parked"].id, rows["published"].id]

    response = admin_client.post(
        reverse(CHANGELIST), {"action": "retry_now", "_selected_action": selected}, follow=True
    )

    assert response.status_code == 200
    assert "1 parked message(s) queued" in response.content.decode()
    parked, published = (OutboxMessage.objects.get(id=i) for i in selected)
    assert parked.state == OutboxMessage.State.PENDING
    assert parked.attempts == 0 and parked.last_error == "unroutable: NO_ROUTE"
    assert published.state == OutboxMessage.State.PUBLISHED


def _record(event_type: EventType, aggregate_id: str, **ids: str) -> OutboxMessage:
    with transaction.atomic():
        return record_event(
            event_type, aggregate_id=aggregate_id, payload=make_payload(aggregate_id), **ids
        )


def _search(admin_client, text: str) -> set[int]:
    response = admin_client.get(reverse(CHANGELIST), {"q": text})
    assert response.status_code == 200
    return {row.id for row in response.context["cl"].result_list}


def test_search_finds_an_aggregate_by_its_exact_id_only(admin_client, event_type):
    # Given an aggregate with two events, and ids that differ only in case or by a suffix
    first, second = _record(event_type, "ORD-7"), _record(event_type, "ORD-7")
    _record(event_type, "ord-7")
    _record(event_type, "ORD-70")

    # When its id is searched, then exactly its rows are listed
    assert _search(admin_client, "ORD-7") == {first.id, second.id}


def test_search_by_type_and_id_finds_that_aggregate_only(admin_client, make_event_type):
    # Given an order and a payment with the same id (as the saga's services use the order's)
    order = _record(make_event_type(aggregate_type="order"), "42")
    payment = _record(make_event_type(aggregate_type="payment"), "42")

    # Then "TYPE:ID", as the aggregate column shows it, finds that aggregate; the bare id, both
    assert _search(admin_client, "payment:42") == {payment.id}
    assert _search(admin_client, "42") == {order.id, payment.id}


def test_search_finds_a_saga_by_its_correlation_id_case_sensitively(admin_client, make_event_type):
    order = _record(make_event_type(aggregate_type="order"), "1", correlation_id="Saga-1")
    payment = _record(make_event_type(aggregate_type="payment"), "1", correlation_id="Saga-1")
    _record(make_event_type(aggregate_type="order"), "2", correlation_id="saga-1")

    assert _search(admin_client, "Saga-1") == {order.id, payment.id}


def test_search_finds_an_event_by_its_id_in_any_uuid_spelling(admin_client, event_type):
    event = _record(event_type, "ORD-1")
    _record(event_type, "ORD-2", causation_id=str(event.event_id))

    # The event itself, not the events it caused (causation ids are not searched: no index)
    assert _search(admin_client, str(event.event_id)) == {event.id}
    assert _search(admin_client, str(event.event_id).upper()) == {event.id}


def test_search_ignores_surrounding_whitespace_and_lists_the_rows_of_every_id(
    admin_client, event_type
):
    one, two = _record(event_type, "ORD-1"), _record(event_type, "ORD-2")
    _record(event_type, "ORD-3")

    assert _search(admin_client, "  ORD-1 ") == {one.id}
    assert _search(admin_client, " ORD-1 \t ORD-2 ") == {one.id, two.id}
    assert _search(admin_client, "ORD-1 no-such-id") == {one.id}


def _search_sql(admin_client, text: str) -> list[str]:
    """The statements on outbox_message that the changelist runs for a search."""
    with CaptureQueriesContext(connection) as captured:
        _search(admin_client, text)
    return [q["sql"] for q in captured.captured_queries if "outbox_message" in q["sql"]]


def test_id_search_compares_the_columns_as_they_are(admin_client, event_type):
    # Given a row, so the search has aggregate types to look in
    _record(event_type, "ORD-1")

    statements = _search_sql(admin_client, "ORD-1")

    # UPPER(col) = UPPER(term), Django's "=field" search, is what no index can serve
    assert statements and not [sql for sql in statements if "UPPER(" in sql.upper()]
    assert any('"outbox_message"."aggregate_id" = \'ORD-1\'' in sql for sql in statements)


@pytest.mark.parametrize("text", ["ORD-1", "order:ORD-1", "ORD-1 ORD-2", "{event_id}"])
def test_id_search_is_served_by_indexes(admin_client, event_type, text):
    # Given a row, and the statements the changelist runs to search it
    event = _record(event_type, "ORD-1")
    statements = _search_sql(admin_client, text.format(event_id=event.event_id))

    # When they are planned with sequential scans priced out (a tiny test table would be read
    # whole anyway), then every one looks its rows up in an index by the index's leading column:
    # neither a sequential scan nor a walk through a whole index (what PostgreSQL 15 does for
    # `aggregate_id = ...` alone on the (aggregate_type, aggregate_id, sequence) index)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plans = []
        for sql in statements:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
            plans.append(cursor.fetchone()[0][0]["Plan"])
        reads = [index_reads(cursor, plan) for plan in plans]

    assert len(statements) >= 2  # the aggregate types present, then the page (and its count)
    assert any(reads) and [r for plan in reads for r in plan if not r.by_leading_column] == []
