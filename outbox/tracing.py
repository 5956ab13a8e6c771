"""W3C Trace Context (``traceparent``) carried from a web request through the outbox to handlers.

Why a small implementation of our own instead of OpenTelemetry: the framework only has to
*propagate* a trace — read ``traceparent`` where work comes in (an HTTP request, a delivery),
keep it in a context variable while that work runs, and write a child of it into every event
recorded meanwhile (``record_event`` does, into the row's headers, so it reaches the broker and
the next handler). OpenTelemetry has no kombu instrumentation (we would inject and extract the
header ourselves anyway), and its SDK only earns its weight with an exporter and a collector,
which this project does not run. The format is the W3C Recommendation's, version ``00``: a
process that does run OpenTelemetry reads and continues these traces unchanged. Span ids name
the unit of work a log line belongs to (``trace_id``/``span_id`` in the JSON logs); spans are not
exported anywhere.
"""

import contextlib
import re
import secrets
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

HEADER = "traceparent"
# CloudEvents' distributed-tracing extension names the same value ``ce-traceparent``.
CLOUDEVENTS_HEADER = "ce-traceparent"
VERSION = "00"
SAMPLED = 0x01

# version-traceid-parentid-flags, lower-case hex. A future version may append fields after the
# flags ("-..."); version 00 must end there. Version ff is forbidden.
_TRACEPARENT = re.compile(
    r"^(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-(?P<span_id>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?$"
)
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16


@dataclass(frozen=True)
class TraceContext:
    """One span's identity: the trace it belongs to, its own id and the trace flags."""

    trace_id: str
    span_id: str
    flags: int = SAMPLED

    @property
    def traceparent(self) -> str:
        """The ``traceparent`` header value naming this span as the parent of the next one."""
        return f"{VERSION}-{self.trace_id}-{self.span_id}-{self.flags:02x}"

    def child(self) -> "TraceContext":
        """A new span of the same trace (same trace id and flags, fresh span id)."""
        return TraceContext(self.trace_id, _new_span_id(), self.flags)


def new_trace() -> TraceContext:
    """The root span of a new trace (sampled: we record everything, nothing is dropped)."""
    return TraceContext(secrets.token_hex(16), _new_span_id(), SAMPLED)


def parse_traceparent(value: Any) -> TraceContext | None:
    """The span named by a ``traceparent`` value, or None when it is missing or malformed.

    A malformed header is ignored, as the W3C rules require (the receiver then starts a new
    trace): never an error, since it comes from outside.
    """
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_id, span_id = match["version"], match["trace_id"], match["span_id"]
    if version == "ff" or (version == VERSION and match["rest"]):
        return None
    if trace_id == _INVALID_TRACE_ID or span_id == _INVALID_SPAN_ID:
        return None
    return TraceContext(trace_id, span_id, int(match["flags"], 16))


def from_headers(headers: Mapping[str, Any]) -> TraceContext | None:
    """The parent span carried by message headers (``traceparent``, else ``ce-traceparent``)."""
    return parse_traceparent(headers.get(HEADER)) or parse_traceparent(
        headers.get(CLOUDEVENTS_HEADER)
    )


_current: ContextVar[TraceContext | None] = ContextVar("outbox_trace", default=None)


def current() -> TraceContext | None:
    """The span of the work in progress (a request, a handled event), if any."""
    return _current.get()


@contextlib.contextmanager
def span(parent: TraceContext | None) -> Iterator[TraceContext]:
    """Run the block as a new span: a child of ``parent``, or the root of a new trace."""
    context = parent.child() if parent is not None else new_trace()
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def outgoing_traceparent() -> str:
    """The ``traceparent`` of an event recorded now: a child span of the current work.

    Outside any span (a management command, a scheduled job) the event starts its own trace, so
    every event and everything that follows from it can still be followed by one id.
    """
    parent = current()
    return (parent.child() if parent is not None else new_trace()).traceparent


def _new_span_id() -> str:
    span_id = secrets.token_hex(8)
    # All zeros is the one invalid value (a chance of 2**-64, but it costs nothing to rule out).
    return span_id if span_id != _INVALID_SPAN_ID else _new_span_id()
