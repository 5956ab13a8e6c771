"""The outbox's public surface in one import: declare event types and record events.

``from outbox.api import EventType, register, record_event`` is the same as importing each from
its own module (``outbox.registry``, ``outbox.recording``); both are supported.
"""

from outbox.exceptions import (
    EventTypeConflict,
    InvalidOccurredAt,
    InvalidPayload,
    NotInTransaction,
    OutboxError,
    UnknownEventType,
)
from outbox.recording import record_event
from outbox.registry import EventType, all_event_types, get_event_type, register

__all__ = [
    "EventType",
    "EventTypeConflict",
    "InvalidOccurredAt",
    "InvalidPayload",
    "NotInTransaction",
    "OutboxError",
    "UnknownEventType",
    "all_event_types",
    "get_event_type",
    "record_event",
    "register",
]
