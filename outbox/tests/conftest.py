"""Fixtures for the outbox tests: throw-away event types on throw-away exchanges."""

import contextlib
from collections.abc import Callable, Iterator

import amqp
import pytest

from outbox.registry import EventType, register, unregister
from outbox.tests.helpers import broker_connection, unique

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["order_id", "total"],
    "properties": {
        "order_id": {"type": "string"},
        "total": {"type": "string", "pattern": r"^\d+\.\d{2}$"},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku", "quantity"],
                "properties": {
                    "sku": {"type": "string"},
                    "quantity": {"type": "integer", "minimum": 1},
                },
            },
        },
    },
}


@pytest.fixture
def broker() -> Iterator[amqp.Channel]:
    """A channel on the real RabbitMQ; closed after the test."""
    connection = broker_connection()
    try:
        yield connection.channel()
    finally:
        connection.close()


@pytest.fixture
def make_event_type(broker: amqp.Channel) -> Iterator[Callable[..., EventType]]:
    """Register event types on a fresh exchange each; unregister and delete after the test."""
    created: list[EventType] = []

    def make(
        type: str | None = None,
        *,
        exchange: str | None = None,
        declare: bool = True,
        aggregate_type: str = "order",
    ) -> EventType:
        event_type = EventType(
            type=type or unique("test.order.placed"),
            version=1,
            exchange=exchange or unique("test.outbox"),
            aggregate_type=aggregate_type,
            schema=SCHEMA,
            description="A test order was placed.",
        )
        if declare:
            broker.exchange_declare(event_type.exchange, "topic", durable=True, auto_delete=False)
        created.append(register(event_type))
        return event_type

    yield make
    for event_type in created:
        unregister(event_type)
    # A fresh connection: the test may have left `broker` closed by a channel error.
    connection = broker_connection()
    try:
        for event_type in created:
            with contextlib.suppress(amqp.exceptions.ChannelError):
                connection.channel().exchange_delete(event_type.exchange)
    finally:
        connection.close()


@pytest.fixture
def event_type(make_event_type: Callable[..., EventType]) -> EventType:
    return make_event_type()
