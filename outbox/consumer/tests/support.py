"""A throw-away consumer service on throw-away event types, shared by in-process tests and the
worker processes the tests start (``python -m outbox.consumer.tests.process``).

Knows nothing about the shop: an ``order`` aggregate is just a test name here.
"""

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import amqp

from outbox.broker import connect
from outbox.conf import get_settings
from outbox.consumer.events import ReceivedEvent
from outbox.consumer.service import ConsumerService, unregister_service
from outbox.models import OutboxMessage
from outbox.recording import record_event
from outbox.registry import EventType, register, unregister
from outbox.signing import sign_row
from outbox.tests.processes import ChildProcess
from outbox.wire import to_amqp

SCHEMA = {
    "type": "object",
    "required": ["order_id", "total"],
    "properties": {
        "order_id": {"type": "string"},
        "total": {"type": "string", "pattern": r"^\d+\.\d{2}$"},
    },
}
OUT_SCHEMA = {"type": "object", "required": ["order_id"], "properties": {"order_id": {}}}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class TestBed:
    """The service under test: it consumes ``placed`` (v1 only) and records ``charged``.

    ``behaviour(event, call_number)`` runs after the handler recorded its outgoing event, so a
    failure it raises proves the effect rolls back with the inbox row.
    """

    __test__ = False  # not a pytest test class

    service: ConsumerService
    placed: EventType
    charged: EventType
    calls: list[ReceivedEvent] = field(default_factory=list)
    behaviour: Callable[[ReceivedEvent, int], None] | None = None

    @property
    def exchange(self) -> str:
        return self.placed.exchange

    def handle_placed(self, event: ReceivedEvent) -> None:
        self.calls.append(event)
        record_event(
            self.charged,
            aggregate_id=event.subject,
            payload={"order_id": event.payload["order_id"]},
            correlation_id=event.correlation_id,
            causation_id=str(event.id),
            using=self.service.database,
        )
        if self.behaviour is not None:
            self.behaviour(event, len(self.calls))

    def unregister(self) -> None:
        unregister_service(self.service.name)
        unregister(self.placed)
        unregister(self.charged)


def declare_test_bed(name: str, exchange: str, *, max_retries: int = 3, **kwargs: Any) -> TestBed:
    """Declare the service ``name`` with event types ``<name>.order.placed/charged``."""
    placed = register(
        EventType(
            type=f"{name}.order.placed",
            version=1,
            exchange=exchange,
            aggregate_type="order",
            schema=SCHEMA,
            description="A test order was placed.",
        )
    )
    charged = register(
        EventType(
            type=f"{name}.order.charged",
            version=1,
            exchange=exchange,
            aggregate_type="charge",
            schema=OUT_SCHEMA,
            description="A test order was charged.",
        )
    )
    bed = TestBed(
        service=ConsumerService(name, max_retries=max_retries, **kwargs),
        placed=placed,
        charged=charged,
    )
    bed.service.handles(placed.type, version=1)(bed.handle_placed)
    return bed


def event_message(
    event_type: EventType,
    *,
    payload: dict | None = None,
    event_id: uuid.UUID | None = None,
    subject: str = "o-1",
    sequence: int = 1,
    version: int | None = None,
) -> amqp.Message:
    """The AMQP message the relay would publish for such an event (built by outbox.wire),
    signed with the current key of the event's source, as ``record_event`` signs."""
    row = OutboxMessage(
        event_id=event_id or uuid.uuid4(),
        source=event_type.source or get_settings().source,
        type=event_type.type,
        schema_version=version or event_type.version,
        aggregate_type=event_type.aggregate_type,
        aggregate_id=subject,
        sequence=sequence,
        correlation_id=unique("corr"),
        causation_id="",
        occurred_at=datetime.now(UTC),
        headers={},
        payload=payload if payload is not None else {"order_id": subject, "total": "10.00"},
    )
    return to_amqp(sign_row(row))


def broker_connection() -> amqp.Connection:
    return connect(get_settings().broker_url)


def publish(message: amqp.Message, *, exchange: str, routing_key: str) -> None:
    """Publish with a confirm on a short-lived connection (no state shared with the worker)."""
    conn = broker_connection()
    try:
        conn.channel().basic_publish_confirm(message, exchange=exchange, routing_key=routing_key)
    finally:
        conn.close()


def queue_depth(name: str) -> int:
    conn = broker_connection()
    try:
        return conn.channel().queue_declare(name, passive=True)[1]
    finally:
        conn.close()


def get_all(name: str, timeout: float = 5.0, expect: int = 1) -> list[amqp.Message]:
    """Take (and ack) what is in queue ``name``, waiting up to ``timeout`` for ``expect`` ones."""
    conn = broker_connection()
    got: list[amqp.Message] = []
    try:
        channel = conn.channel()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = channel.basic_get(name, no_ack=True)
            if message is not None:
                got.append(message)
            elif len(got) >= expect:
                break
            else:
                time.sleep(0.02)
    finally:
        conn.close()
    return got


def bed_worker(tmp_path: Path, bed: TestBed, mode: str, *args: str, **env: str) -> ChildProcess:
    """The test bed's worker as a child process (``python -m outbox.consumer.tests.process``)."""
    argv = [sys.executable, "-m", "outbox.consumer.tests.process", mode]
    return ChildProcess.start(tmp_path, mode, [*argv, bed.service.name, bed.exchange, *args], **env)
