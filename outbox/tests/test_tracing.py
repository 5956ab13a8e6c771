"""W3C traceparent: parsing and formatting, and the trace an event inherits when it is recorded."""

import pytest
from django.db import transaction

from outbox import tracing
from outbox.recording import record_event

from .helpers import make_payload

EXAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_traceparent_is_read_and_written_back_unchanged():
    context = tracing.parse_traceparent(EXAMPLE)
    assert context == tracing.TraceContext(
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 0x01
    )
    assert context.traceparent == EXAMPLE


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # v00 has 4 fields
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
    ],
)
def test_a_malformed_traceparent_is_ignored(value):
    assert tracing.parse_traceparent(value) is None


def test_a_later_version_is_read_for_its_first_four_fields():
    value = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next"
    assert tracing.parse_traceparent(value).trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_child_span_keeps_trace_and_flags_with_a_new_span_id():
    parent = tracing.parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
    child = parent.child()
    assert (child.trace_id, child.flags) == (parent.trace_id, 0)
    assert child.span_id != parent.span_id


def test_span_sets_the_current_context_only_inside_the_block():
    parent = tracing.parse_traceparent(EXAMPLE)
    assert tracing.current() is None
    with tracing.span(parent) as inner:
        assert tracing.current() is inner
        assert inner.trace_id == parent.trace_id
        with tracing.span(None) as root:
            assert root.trace_id != parent.trace_id  # no parent: a new trace
        assert tracing.current() is inner
    assert tracing.current() is None


@pytest.mark.django_db
def test_an_event_recorded_in_a_span_continues_its_trace_as_a_child(event_type):
    # given work running in a span of a known trace
    with tracing.span(tracing.parse_traceparent(EXAMPLE)) as work, transaction.atomic():
        # when it records an event
        row = record_event(event_type, aggregate_id="o-1", payload=make_payload())
    # then the event names a new child span of that work, in the same trace
    sent = tracing.parse_traceparent(row.headers["traceparent"])
    assert sent.trace_id == work.trace_id
    assert sent.span_id not in (work.span_id, "00f067aa0ba902b7")


@pytest.mark.django_db
def test_an_event_recorded_outside_any_span_starts_a_trace_of_its_own(event_type):
    with transaction.atomic():
        first = record_event(event_type, aggregate_id="o-1", payload=make_payload())
        second = record_event(event_type, aggregate_id="o-1", payload=make_payload())
    one, two = (tracing.parse_traceparent(r.headers["traceparent"]) for r in (first, second))
    assert one is not None and two is not None
    assert one.trace_id != two.trace_id


@pytest.mark.django_db
def test_a_traceparent_given_by_the_caller_is_kept(event_type):
    with tracing.span(None), transaction.atomic():
        row = record_event(
            event_type,
            aggregate_id="o-1",
            payload=make_payload(),
            headers={"traceparent": EXAMPLE},
        )
    assert row.headers["traceparent"] == EXAMPLE
