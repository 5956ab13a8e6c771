"""Analytics added to a shop that already took 200 orders: rebuilt from the retained events."""

import pytest
from django.core.management import call_command

from consumers.analytics.handlers import service as analytics
from consumers.analytics.selectors import analytics_figures
from outbox.consumer.models import InboxEntry
from tests.replay.conftest import (
    analytics_events,
    assert_same_figures,
    delete_queue,
    figures_from_log,
    place_orders,
    record_saga,
    wait_until_published,
)

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def test_analytics_added_after_200_orders_is_rebuilt_from_the_log(start_saga, spawn):
    # (start_saga: the broker topology, and every service queue purged; no process started)
    # given a shop without analytics (its queue does not even exist) that took 200 orders:
    # checkout and cancellations through the monolith, then the payments' and shipping's events
    delete_queue(analytics.queue_name)
    orders = place_orders(200)
    record_saga(orders, delivered_every=5)
    relay = spawn("relay_outbox")
    wait_until_published()
    relay.stop()
    events = analytics_events()
    kinds = {row.type for row in events}
    assert len(kinds) == 7  # placed, cancelled, authorized, declined, refunded, shipped, delivered
    assert not InboxEntry.objects.filter(service="analytics").exists()
    # when analytics is deployed: its topology, its worker, and a rebuild from the retained log
    call_command("setup_broker", verbosity=0)
    spawn("consume_events", "--service", "analytics")
    call_command("rebuild_projection", "analytics", "--wait", "--timeout", "90")
    # then it shows what a service that saw every event shows
    expected = figures_from_log()
    assert expected.steps["placed"] == 200
    assert 0 < expected.steps["declined"] < expected.steps["paid"]
    assert 100 < expected.delivered_orders < expected.steps["shipped"]
    assert expected.by_status["cancelled"] > 0
    assert_same_figures(analytics_figures(), expected)
    assert InboxEntry.objects.filter(service="analytics").count() == len(events)
