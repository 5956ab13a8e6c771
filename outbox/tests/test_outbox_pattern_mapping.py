"""How django-outbox-pattern's destinations and headers map to our events (no I/O)."""

import uuid

import pytest

from outbox import outbox_pattern as dop
from outbox.registry import EventType, register, unregister

from .conftest import SCHEMA
from .helpers import unique


@pytest.fixture
def two_versions():
    """One type registered at versions 1 and 2."""
    name = unique("test.order.placed")
    types = [
        register(
            EventType(
                type=name,
                version=version,
                exchange="test.outbox",
                aggregate_type="order",
                schema=SCHEMA,
                description="A test order was placed.",
            )
        )
        for version in (1, 2)
    ]
    yield types
    for event_type in types:
        unregister(event_type)


def test_routing_key_names_the_type_its_version_suffix_the_version(two_versions):
    v1, v2 = two_versions
    assert dop.event_type_for(v1.type) == v1  # bare: the lowest registered version
    assert dop.event_type_for(f"{v1.type}.v2") == v2  # what its version="v2" appends
    with pytest.raises(dop.Unmappable, match="no registered version 3"):
        dop.event_type_for(f"{v1.type}.v3")
    with pytest.raises(dop.Unmappable, match="is not a registered event type"):
        dop.event_type_for("nobody.knows.this")


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("/exchange/fitness.orders/orders.order.placed", ("fitness.orders", "orders.order.placed")),
        ("/exchange/x/a/b", ("x", "a/b")),
    ],
)
def test_exchange_destinations_split_into_exchange_and_routing_key(destination, expected):
    parsed = dop.parse_destination(destination)
    assert (parsed.exchange, parsed.routing_key) == expected


@pytest.mark.parametrize("destination", ["/queue/orders", "/topic/orders", "/exchange/x", ""])
def test_other_destinations_are_unmappable(destination):
    with pytest.raises(dop.Unmappable, match="is not /exchange/"):
        dop.parse_destination(destination)


def test_message_id_is_its_dop_msg_id_else_the_row_id_for_rows_without_headers():
    row_id = uuid.uuid4()
    assert dop.message_id({"dop-msg-id": str(row_id)}) == row_id
    assert dop.message_id({}, fallback=row_id) == row_id
    with pytest.raises(dop.Unmappable, match="no dop-msg-id header"):
        dop.message_id({})
    with pytest.raises(dop.Unmappable, match="is not a UUID"):
        dop.message_id({"dop-msg-id": "42"}, fallback=row_id)


def test_its_messages_are_told_from_ours_by_content_type_and_dop_headers():
    dop_headers = {"application_headers": {"dop-msg-id": str(uuid.uuid4())}}
    assert dop.is_outbox_pattern_message(dop_headers)
    # Our relay's copy of an imported event keeps the dop-* headers but has a content type.
    assert not dop.is_outbox_pattern_message({**dop_headers, "content_type": "application/json"})
    assert not dop.is_outbox_pattern_message({"application_headers": {"ce-id": "x"}})


def test_correlation_id_is_its_header_unless_missing_or_too_long_for_our_envelope():
    event_id = uuid.uuid4()
    assert dop.correlation_id({"dop-correlation-id": "order-7"}, event_id) == "order-7"
    assert dop.correlation_id({}, event_id) == str(event_id)
    # It takes any length; ours stops at 100 characters: the event starts its own correlation.
    assert dop.correlation_id({"dop-correlation-id": "é" * 101}, event_id) == str(event_id)
