"""Helpers to test a service's handlers in-process, on the real database, without a broker.

``handle(service, event)`` runs the event through the dispatcher's own handling path (payload
validated against the registry, inbox row and handler in one transaction on the service's
database), so a test sees what a worker would commit, duplicates included.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from outbox.consumer.dispatcher import Dispatcher
from outbox.consumer.events import ReceivedEvent
from outbox.consumer.service import ConsumerService


def received_event(
    type_: str,
    payload: dict[str, Any],
    *,
    version: int = 1,
    source: str = "test",
    subject: str | None = None,
    sequence: int | None = 1,
    at: datetime | None = None,
    correlation_id: str = "c",
) -> ReceivedEvent:
    """An event as a worker would receive it; the subject defaults to the payload's order id."""
    return ReceivedEvent(
        id=uuid.uuid4(),
        type=type_,
        version=version,
        source=source,
        subject=subject if subject is not None else str(payload.get("order_id", "")),
        sequence=sequence,
        time=at or datetime.now(UTC),
        correlation_id=correlation_id,
        causation_id=None,
        payload=payload,
        headers={},
    )


def handle(service: ConsumerService, *events: ReceivedEvent) -> list[bool]:
    """Handle ``events`` one after the other, each in its own transaction; False = duplicate."""
    dispatcher = Dispatcher(service)
    try:
        return [dispatcher.apply(event) for event in events]
    finally:
        dispatcher.close()
