"""A worker's metrics, JSON log lines and trace propagation, on the real RabbitMQ and PostgreSQL."""

import io
import json
import logging
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from outbox import tracing
from outbox.consumer.tests.conftest import consumer_db, run_worker
from outbox.consumer.tests.support import event_message, publish
from outbox.logs import JsonFormatter
from outbox.models import OutboxMessage

pytestmark = consumer_db

INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def events_counted(bed, outcome: str, event_type: str | None = None) -> float:
    labels = {
        "service": bed.service.name,
        "event_type": event_type or bed.placed.type,
        "outcome": outcome,
    }
    return REGISTRY.get_sample_value("outbox_consumer_events_total", labels) or 0.0


def handling_count(bed) -> float:
    labels = {"service": bed.service.name, "event_type": bed.placed.type}
    return REGISTRY.get_sample_value("outbox_consumer_handling_seconds_count", labels) or 0.0


def publish_event(bed, message) -> None:
    publish(message, exchange=bed.exchange, routing_key=message.properties["type"])


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the root logger writes, formatted as in production (LOG_FORMAT=json)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_handled_duplicate_and_dead_lettered_events_are_counted_apart(bed):
    # given an event delivered twice and an event whose payload breaks the schema
    message = event_message(bed.placed, subject="o-1")
    publish_event(bed, message)
    publish_event(bed, message)
    publish_event(bed, event_message(bed.placed, subject="o-2", payload={"order_id": "o-2"}))
    # when the worker runs
    run_worker(bed)
    # then one of each outcome is counted for the service and type, nothing else
    assert events_counted(bed, "handled") == 1
    assert events_counted(bed, "duplicate") == 1
    assert events_counted(bed, "dead_lettered") == 1
    assert events_counted(bed, "retried") == 0
    # and only the one handler run was timed (a duplicate or invalid event runs no handler)
    assert handling_count(bed) == 1


def test_a_failed_attempt_is_counted_as_retried_then_handled(bed):
    def fail_once(event, call):
        if call == 1:
            raise ValueError("boom")

    bed.behaviour = fail_once
    publish_event(bed, event_message(bed.placed))
    run_worker(bed, idle=1.0)
    assert (events_counted(bed, "retried"), events_counted(bed, "handled")) == (1, 1)
    assert handling_count(bed) == 2


def test_a_delivery_that_is_no_event_is_counted_as_invalid(bed):
    message = event_message(bed.placed)
    del message.properties["application_headers"]["ce-type"]
    publish(message, exchange="", routing_key=bed.service.queue_name)
    run_worker(bed)
    assert events_counted(bed, "dead_lettered", event_type="invalid") == 1


def test_every_log_line_about_a_handled_event_names_it(bed, json_log):
    # given an event published with a correlation id
    message = event_message(bed.placed)
    publish_event(bed, message)

    # when a handler logs while handling it
    def log_something(event, call):
        logging.getLogger("a.handler").info("charging the card")

    bed.behaviour = log_something
    run_worker(bed)
    # then the handler's and the framework's lines carry id, type, correlation id and service
    about = [line for line in lines(json_log) if line.get("event_id")]
    assert {line["logger"] for line in about} >= {"a.handler", "outbox.consumer.dispatcher"}
    for line in about:
        assert line["event_id"] == message.properties["message_id"]
        assert line["event_type"] == bed.placed.type
        assert line["correlation_id"] == message.properties["correlation_id"]
        assert line["service"] == bed.service.name
    assert any("handled" in line["message"] for line in about)
    # and lines outside the handling (start, stop) do not
    others = [line for line in lines(json_log) if "event_id" not in line]
    assert any("consuming" in line["message"] for line in others)


def test_the_handler_runs_in_the_events_trace_and_its_own_event_continues_it(bed, json_log):
    # given an event that carries a traceparent
    message = event_message(bed.placed)
    message.properties["application_headers"]["traceparent"] = INCOMING
    publish_event(bed, message)
    # when the worker handles it (the test bed's handler records a `charged` event)
    run_worker(bed)
    # then the handler's log lines are in that trace, in a span of their own
    incoming = tracing.parse_traceparent(INCOMING)
    (handled,) = [line for line in lines(json_log) if ": handled event=" in line["message"]]
    assert handled["trace_id"] == incoming.trace_id
    assert handled["span_id"] != incoming.span_id
    # and the event the handler recorded continues the trace under a new parent span
    (out,) = OutboxMessage.objects.filter(type=bed.charged.type)
    sent = tracing.parse_traceparent(out.headers["traceparent"])
    assert sent.trace_id == incoming.trace_id
    assert sent.span_id not in (incoming.span_id, handled["span_id"])
