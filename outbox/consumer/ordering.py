"""Helpers for handlers that care about the order of their aggregate's events.

The framework does not gate on sequence numbers (a service sees only the types it subscribes to,
so gaps are normal). A handler whose event needs a predecessor checks its *own* state and raises
:class:`~outbox.exceptions.RetryLater` when the predecessor is missing; a handler that must not
apply an older event after a newer one asks :func:`is_superseded`. See docs/consumers.md.
"""

from outbox.consumer.events import ReceivedEvent
from outbox.consumer.inbox import last_applied_sequence
from outbox.consumer.service import ConsumerService


def is_superseded(event: ReceivedEvent, *, service: ConsumerService) -> bool:
    """Whether ``service`` already applied a *later* event of the same aggregate.

    Call it inside the handler (the dispatcher has already raised the mark to this event's
    sequence, so only a strictly greater mark counts). False for events without a sequence.
    """
    if event.sequence is None:
        return False
    last = last_applied_sequence(service=service.name, event=event, using=service.database)
    return last is not None and last > event.sequence
