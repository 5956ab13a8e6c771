"""Structured logs: one JSON object per line, carrying the event and trace a line is about.

The dispatcher (while it handles a delivery) and the relay (while it logs about a row) bind the
event's id, type, correlation id and service with :func:`event_context`; every line logged in
that block, by the framework or by a handler, carries them — no handler has to repeat them.
The current W3C trace (``outbox.tracing``) is added the same way. Django's ``LOGGING`` picks the
formatter (``LOG_FORMAT=json|text``, see docs/operations.md)::

    "formatters": {"json": {"()": "outbox.logs.JsonFormatter"}, ...}
"""

import contextlib
import json
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from outbox import tracing

_event: ContextVar[dict[str, str] | None] = ContextVar("outbox_log_event", default=None)

# The attributes every LogRecord has; anything else on a record came from ``extra=`` and is
# copied into the JSON object.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


@contextlib.contextmanager
def event_context(
    *, event_id: Any, event_type: str, correlation_id: str, service: str
) -> Iterator[None]:
    """Every line logged in the block is about this event (``service``: who deals with it).

    ``service`` is the consuming service for a handler's lines and the producing service (the
    event's source) for the relay's.
    """
    token = _event.set(
        {
            "event_id": str(event_id),
            "event_type": event_type,
            "correlation_id": correlation_id,
            "service": service,
        }
    )
    try:
        yield
    finally:
        _event.reset(token)


def context_fields() -> dict[str, str]:
    """The event and trace fields bound right now (empty outside any event or request)."""
    fields = dict(_event.get() or {})
    trace = tracing.current()
    if trace is not None:
        fields["trace_id"] = trace.trace_id
        fields["span_id"] = trace.span_id
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, context, ``extra=``."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a single line of JSON (exceptions included, as text)."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        line.update(context_fields())
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The human format of ``make run``: the plain line, plus the trace id when there is one.

    The event fields are not repeated here: the framework's own messages about an event already
    name it (``event=... type=... correlation=...``).
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The plain line, with `` trace=<id>`` appended inside a request or a handled event."""
        text = super().format(record)
        trace = tracing.current()
        return text if trace is None else f"{text} trace={trace.trace_id}"


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """A ``LOGGING`` dict: everything to stderr, as JSON (``json``) or for humans (``text``)."""
    if log_format not in {"json", "text"}:
        raise ValueError(f"LOG_FORMAT must be 'json' or 'text', not {log_format!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "outbox.logs.JsonFormatter"},
            "text": {"()": "outbox.logs.TextFormatter"},
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": log_format}},
        "root": {"handlers": ["console"], "level": level},
    }
