"""JSON log lines: the event and trace bound by the framework are on every line, then gone."""

import json
import logging

import pytest

from outbox import tracing
from outbox.logs import JsonFormatter, TextFormatter, event_context, logging_config


def record(message: str = "something happened", **extra) -> logging.LogRecord:
    log_record = logging.LogRecord("test.logger", logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(log_record, key, value)
    return log_record


def test_a_line_inside_an_event_context_carries_the_event_and_the_trace():
    trace = tracing.parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    with (
        tracing.span(trace) as span,
        event_context(
            event_id="e-1", event_type="shop.order.placed", correlation_id="c-1", service="pay"
        ),
    ):
        line = json.loads(JsonFormatter().format(record(order="o-7")))
    assert line["message"] == "something happened"
    assert (line["level"], line["logger"]) == ("INFO", "test.logger")
    assert line["event_id"] == "e-1"
    assert line["event_type"] == "shop.order.placed"
    assert line["correlation_id"] == "c-1"
    assert line["service"] == "pay"
    assert (line["trace_id"], line["span_id"]) == (trace.trace_id, span.span_id)
    assert line["order"] == "o-7"  # extra= fields come along
    assert line["time"].endswith("+00:00")


def test_a_line_outside_any_context_has_no_event_fields():
    line = json.loads(JsonFormatter().format(record()))
    assert not {"event_id", "event_type", "correlation_id", "service", "trace_id"} & set(line)


def test_an_exception_is_one_json_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        log_record = record()
        log_record.exc_info = sys.exc_info()
    text = JsonFormatter().format(log_record)
    assert "\n" not in text
    assert "ValueError: boom" in json.loads(text)["exception"]


def test_the_text_format_names_the_trace():
    with tracing.span(None) as span:
        text = TextFormatter().format(record())
    assert text.endswith(f"INFO test.logger something happened trace={span.trace_id}")


def test_log_format_must_be_json_or_text():
    assert logging_config(log_format="text", level="INFO")["handlers"]["console"]["formatter"] == (
        "text"
    )
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_config(log_format="xml", level="INFO")
