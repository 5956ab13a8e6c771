"""Prometheus metrics reflect a known sequence of events: recorded, relayed, parked."""

import pytest
from django.db import transaction

from outbox.metrics import outbox_databases
from outbox.recording import record_event
from outbox.relay import Relay

from .helpers import Samples, bind_queue, get_messages, make_payload, metric, metric_samples

pytestmark = pytest.mark.django_db(transaction=True)


def scrape(client) -> Samples:
    """GET /metrics of the web process."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return metric_samples(response.content.decode())


def record(event_type, count: int) -> None:
    with transaction.atomic():
        for n in range(count):
            record_event(event_type, aggregate_id=f"o-{n}", payload=make_payload(f"o-{n}"))


def test_backlog_and_relay_counters_move_by_exactly_the_events_relayed(client, event_type, broker):
    # given 5 committed events of a fresh type, not yet relayed
    queue = bind_queue(broker, event_type.exchange)
    before = scrape(client)
    record(event_type, 5)
    # then the backlog counts them and the oldest of them has an age
    waiting = scrape(client)
    backlog = "outbox_backlog_events"
    assert (
        metric(waiting, backlog, database="default")
        == metric(before, backlog, database="default") + 5
    )
    assert metric(waiting, "outbox_oldest_pending_age_seconds", database="default") > 0
    # when the relay drains the outbox
    assert Relay(once=True).run() == 5
    assert len(get_messages(broker, queue, 5, timeout=2)) == 5
    # then the backlog is back, the age 0, and exactly 5 publications of that type were counted
    after = scrape(client)
    assert metric(after, backlog, database="default") == metric(before, backlog, database="default")
    assert metric(after, "outbox_oldest_pending_age_seconds", database="default") == 0
    labels = {"database": "default", "event_type": event_type.type}
    assert metric(after, "outbox_relay_published_total", **labels) == 5
    assert metric(after, "outbox_relay_failed_total", **labels) == 0
    # and the confirm round was timed
    rounds = "outbox_relay_publish_seconds_count"
    assert metric(after, rounds, database="default") > metric(before, rounds, database="default")


def test_a_parked_row_is_counted_by_the_relay_and_in_the_table(
    client, event_type, broker, settings
):
    # given one event too large for the broker and one ordinary event
    settings.OUTBOX_MAX_MESSAGE_BYTES = 1500
    bind_queue(broker, event_type.exchange)
    before = scrape(client)
    with transaction.atomic():
        huge = {**make_payload("o-1"), "lines": [{"sku": "x" * 2000, "quantity": 1}]}
        record_event(event_type, aggregate_id="o-1", payload=huge)
        record_event(event_type, aggregate_id="o-2", payload=make_payload("o-2"))
    # when the relay runs
    Relay(once=True).run()
    # then one publication, one failure that parked its row, and one more parked row in the table
    after = scrape(client)
    labels = {"database": "default", "event_type": event_type.type}
    assert metric(after, "outbox_relay_published_total", **labels) == 1
    assert metric(after, "outbox_relay_failed_total", **labels) == 1
    assert metric(after, "outbox_relay_parked_total", **labels) == 1
    parked = "outbox_parked_events"
    assert (
        metric(after, parked, database="default") == metric(before, parked, database="default") + 1
    )
    assert metric(after, "outbox_backlog_events", database="default") == metric(
        before, "outbox_backlog_events", database="default"
    )


def test_request_metrics_of_django_are_served_too(client):
    client.get("/healthz")
    samples = scrape(client)
    assert metric(samples, "django_http_requests_total_by_method_total", method="GET") >= 1


def test_aliases_of_one_database_are_reported_once(settings):
    # The test settings point every service alias at the main database.
    assert outbox_databases() == ["default"]
    settings.OUTBOX_METRICS_DATABASES = ["default", "payments"]
    assert outbox_databases() == ["default", "payments"]
