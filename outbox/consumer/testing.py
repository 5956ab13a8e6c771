"""Helpers to test a service's handlers in-process, on the real database, without a broker.

``handle(service, event)`` runs the event through the dispatcher's own handling path (payload
validated against the registry, inbox row and handler in one transaction on the service's
database), so a test sees what a worker would commit, duplicates included.
``handle_concurrently(service, first, second)`` handles two events on two workers at the same
moment, each on a connection and in a transaction of its own, the first one's left open while
the second is handled: for handlers that must serialise events of one entity themselves.
"""

import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from django.db import connections, transaction

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


class _Worker(threading.Thread):
    """A worker of ``service`` handling one event in a transaction of its own, on a connection of
    its own; with ``hold`` it keeps the transaction open after the handler until ``commit`` is
    set (what a second worker sees meanwhile is what the test is about).

    ``handled`` is set once the handler ran, ``error`` holds what it raised. Use it in tests
    marked ``transaction=True``: the two workers' transactions must really be separate.
    """

    def __init__(
        self, service: ConsumerService, event: ReceivedEvent, *, hold: bool = False
    ) -> None:
        super().__init__(name=f"worker-{service.name}-{event.type}")
        self.service, self.event = service, event
        self.connected, self.handled, self.commit = (threading.Event() for _ in range(3))
        if not hold:
            self.commit.set()
        self.backend_pid = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        """Handle the event, then wait for ``commit`` before committing."""
        using = self.service.database
        try:
            connections[using].ensure_connection()
            self.backend_pid = connections[using].connection.info.backend_pid
            self.connected.set()
            with transaction.atomic(using=using):
                handle(self.service, self.event)
                self.handled.set()
                self.commit.wait(30)
        except BaseException as exc:  # shown by the test
            self.error = exc
        finally:
            connections.close_all()

    def waiting_for_a_lock(self) -> bool:
        """Whether the worker's session waits for a lock (asked on the caller's connection)."""
        with connections[self.service.database].cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", [self.backend_pid]
            )
            return cursor.fetchone() is not None


def handle_concurrently(
    service: ConsumerService, first: ReceivedEvent, second: ReceivedEvent
) -> bool:
    """Handle ``first`` on one worker and, while its transaction is still open, ``second`` on
    another; return whether the second waited for the first one's commit (it had not handled
    its event once it was waiting for a lock, or done). Both have committed on return; an
    error of either is raised. Needs a test marked ``transaction=True`` (separate transactions).
    """
    holding = _Worker(service, first, hold=True)
    holding.start()
    other = _Worker(service, second)
    try:
        if not holding.handled.wait(30):
            raise AssertionError(f"the first worker did not handle {first.type}: {holding.error}")
        other.start()
        if not other.connected.wait(30):
            raise AssertionError(f"the second worker did not connect: {other.error}")
        deadline = time.monotonic() + 15
        while other.is_alive() and not other.waiting_for_a_lock():
            if time.monotonic() > deadline:
                raise AssertionError("the second worker neither waits for a lock nor finishes")
            time.sleep(0.02)
        waited = not other.handled.is_set()
    finally:
        holding.commit.set()
        holding.join(30)
        if other.ident is not None:  # started
            other.join(30)
    for worker in (holding, other):
        if worker.error is not None:
            raise worker.error
    return waited
