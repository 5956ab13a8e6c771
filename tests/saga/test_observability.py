"""One order over HTTP, followed through its trace, its log lines and the processes' metrics.

The relay and the payments worker are real processes with ``--metrics-port`` and JSON logs.
"""

import json
from decimal import Decimal

import pytest

from apps.accounts.services import api_token_issue
from apps.carts.services import cart_add_item
from apps.orders.events import ORDER_PLACED
from consumers.payments.events import PAYMENT_AUTHORIZED
from outbox import tracing
from outbox.models import OutboxMessage
from outbox.tests.helpers import free_port, metric, scrape_port, wait_for
from tests.factories import ADDRESS, GOOD_CARD, TEST_PASSWORD, make_customer, make_product
from tests.saga.conftest import manage_command

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

INCOMING = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def place_order_over_http(client, traceparent: str):
    customer = make_customer()
    product = make_product(price=Decimal("20.00"), stock=5)
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)
    token, _ = api_token_issue(username=customer.get_username(), password=TEST_PASSWORD)
    body = {"address": dict(ADDRESS), "delivery": "standard", "card": dict(GOOD_CARD)}
    return client.post(
        "/api/orders",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", "traceparent": traceparent},
    )


def trace_of(row: OutboxMessage) -> tracing.TraceContext:
    context = tracing.parse_traceparent(row.headers.get("traceparent"))
    assert context is not None, row.headers
    return context


def test_an_http_requests_trace_reaches_the_handler_and_the_event_it_records(
    start_saga, client, tmp_path
):
    # given the relay and the payments worker, each serving metrics and logging JSON (start_saga
    # declared the topology and purged the queues; its default processes are not started)
    relay_port, payments_port = free_port(), free_port()
    relay = manage_command(
        tmp_path, "relay_outbox", "--metrics-port", str(relay_port), LOG_FORMAT="json"
    )
    payments = manage_command(
        tmp_path,
        "consume_events",
        "--metrics-port",
        str(payments_port),
        "--service",
        "payments",
        LOG_FORMAT="json",
    )
    incoming = tracing.parse_traceparent(INCOMING)
    try:
        # when a customer places an order with a traceparent header
        response = place_order_over_http(client, INCOMING)
        assert response.status_code == 201, response.content
        # then the request ran in a child span of the caller's, named in the response
        served = tracing.parse_traceparent(response["traceresponse"])
        assert (served.trace_id, served.span_id != incoming.span_id) == (incoming.trace_id, True)
        # and the order's event continues that trace
        placed = OutboxMessage.objects.get(
            type=ORDER_PLACED.type, aggregate_id=str(response.json()["id"])
        )
        assert trace_of(placed).trace_id == incoming.trace_id
        assert trace_of(placed).span_id not in (incoming.span_id, served.span_id)
        # and the payment the handler recorded in reaction is still in the same trace
        authorized = wait_for(
            lambda: OutboxMessage.objects.filter(
                type=PAYMENT_AUTHORIZED.type, causation_id=str(placed.event_id)
            ).first(),
            30,
            "the payment's event",
        )
        assert trace_of(authorized).trace_id == incoming.trace_id
        assert trace_of(authorized).span_id != trace_of(placed).span_id
        # and the processes' metrics count exactly this one event
        handled = {"service": "payments", "event_type": ORDER_PLACED.type, "outcome": "handled"}
        assert metric(scrape_port(payments_port), "outbox_consumer_events_total", **handled) == 1
        published = {"database": "default", "event_type": ORDER_PLACED.type}
        wait_for(
            lambda: metric(scrape_port(relay_port), "outbox_relay_published_total", **published),
            10,
            "the relay's counter",
        )
        assert metric(scrape_port(relay_port), "outbox_relay_published_total", **published) == 1
    finally:
        relay.stop()
        payments.stop()
    # and the worker's log line about the event names it, its correlation, service and trace
    lines = [json.loads(line) for line in payments.log.splitlines() if line.startswith("{")]
    (line,) = [line for line in lines if ": handled event=" in line["message"]]
    assert line["event_id"] == str(placed.event_id)
    assert line["event_type"] == ORDER_PLACED.type
    assert line["correlation_id"] == placed.correlation_id
    assert line["service"] == "payments"
    assert line["trace_id"] == incoming.trace_id
