"""The event type registry: one definition per type and version."""

import dataclasses

import pytest

from outbox.exceptions import EventTypeConflict, OutboxError, UnknownEventType
from outbox.registry import EventType, all_event_types, get_event_type, register, unregister

from .conftest import SCHEMA


def make(type: str = "test.registry.happened", **changes) -> EventType:
    fields = {
        "type": type,
        "version": 1,
        "exchange": "test.registry",
        "aggregate_type": "thing",
        "schema": SCHEMA,
        "description": "Something happened.",
    }
    return EventType(**{**fields, **changes})


@pytest.fixture
def registered():
    created: list[EventType] = []
    yield created
    for event_type in created:
        unregister(event_type)


def test_register_is_idempotent_for_equal_definitions(registered):
    first = register(make())
    registered.append(first)

    again = register(dataclasses.replace(first))

    assert again is first
    assert get_event_type(first.type, 1) is first
    assert first in all_event_types()


def test_conflicting_duplicate_is_refused(registered):
    registered.append(register(make()))

    with pytest.raises(EventTypeConflict):
        register(make(exchange="test.elsewhere"))


def test_new_version_is_a_separate_event_type(registered):
    v1 = register(make())
    v2 = register(make(version=2, schema={"type": "object"}))
    registered += [v1, v2]

    assert get_event_type(v1.type, 2) is v2
    listed = [et for et in all_event_types() if et.type == v1.type]
    assert listed == [v1, v2]


def test_unknown_event_type():
    with pytest.raises(UnknownEventType, match=r"nope\.never"):
        get_event_type("nope.never", 3)


def test_invalid_definitions_are_refused():
    with pytest.raises(OutboxError, match="bad schema"):
        register(make(schema={"type": "no-such-type"}))
    with pytest.raises(OutboxError, match="version"):
        register(make(version=0))
    with pytest.raises(OutboxError, match="exchange"):
        register(make(exchange=""))


def test_names_amqp_cannot_carry_are_refused(registered):
    # AMQP carries exchange names, routing keys (the type) and the `type` and `app_id`
    # (source) properties as shortstrs: 255 bytes of UTF-8, whatever the number of characters
    too_long = "t." + "é" * 127  # 129 characters, 256 bytes
    for name in ("exchange", "type", "source"):
        with pytest.raises(OutboxError, match=rf"EventType\.{name} is 256 bytes"):
            register(make(**{name: too_long}))

    longest = "t" + "é" * 127  # 255 bytes
    registered.append(register(make(exchange=longest, source=longest)))
