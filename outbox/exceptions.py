"""Errors raised by the outbox. Callers catch :class:`OutboxError` to handle them all."""


class OutboxError(Exception):
    """Base class of every error the outbox raises on purpose."""


class NotInTransaction(OutboxError):
    """``record_event`` was called outside ``transaction.atomic()``.

    The whole point of the outbox is that the event row commits or rolls back with the business
    change, so recording outside a transaction is a programming error, not something to paper over.
    """


class InvalidPayload(OutboxError):
    """The payload (or headers) of an event does not match what its event type declares.

    ``path`` is the JSON path of the offending value (``$`` for the payload itself) and ``reason``
    the validator's message, so the caller can tell exactly what to fix.
    """

    kind = "payload"  # what the message says is invalid

    def __init__(self, event_type: str, version: int, path: str, reason: str) -> None:
        self.event_type = event_type
        self.version = version
        self.path = path
        self.reason = reason
        super().__init__(f"invalid {self.kind} for {event_type} v{version} at {path}: {reason}")

    @property
    def summary(self) -> str:
        """The error without what differs from one row to the next, for reports that count rows
        by reason (``import_outbox_pattern``): here, the message itself."""
        return str(self)


class InvalidOccurredAt(InvalidPayload):
    """The ``occurred_at`` given to ``record_event`` is naive or too far in the future.

    A subclass of :class:`InvalidPayload` (``path`` is ``occurred_at``) so that whoever already
    reports invalid events, such as ``import_outbox_pattern``, reports this one the same way.
    """

    kind = "event time"

    def __init__(self, event_type: str, version: int, reason: str, *, summary: str) -> None:
        super().__init__(event_type, version, "occurred_at", reason)
        self._summary = summary

    @property
    def summary(self) -> str:
        """The refusal without the time and the clock's reading (which differ for every row)."""
        return f"invalid {self.kind} for {self.event_type} v{self.version}: {self._summary}"


class UnknownEventType(OutboxError):
    """No event type with this ``type`` and ``version`` is registered."""


class EventTypeConflict(OutboxError):
    """Two different definitions were registered under the same ``type`` and ``version``."""


# --- Consumer side (outbox.consumer): how a handler tells the framework what to do next. -------


class RetryLater(OutboxError):
    """Transient: retry this event later, with exponential backoff and jitter.

    Raise it for a database or broker hiccup, or when the event's precondition is not met yet (its
    predecessor in the aggregate's history has not been applied): it will be handled again later.
    After the service's ``max_retries`` the event goes to the service's dead-letter queue.
    """


class PermanentError(OutboxError):
    """Terminal: this event can never be handled; dead-letter it now with this message as reason."""
