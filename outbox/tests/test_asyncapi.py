"""The generated AsyncAPI document: structure and validation (throw-away types and services)."""

import pytest

from outbox.asyncapi import build_document, render_json, validate_document
from outbox.asyncapi_html import render_html
from outbox.consumer.service import ConsumerService, unregister_service
from outbox.registry import EventType
from outbox.tests.helpers import unique

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["id"],
    "properties": {"id": {"type": "integer"}, "kind": {"type": "string", "enum": ["a", "b"]}},
}


@pytest.fixture
def world():
    placed = EventType(
        type=unique("shop.order.placed"),
        version=1,
        exchange="test.shop",
        aggregate_type="order",
        schema=SCHEMA,
        description="An order was placed.",
    )
    placed_v2 = EventType(**{**placed.__dict__, "version": 2})
    charged = EventType(
        type=unique("bank.payment.charged"),
        version=1,
        exchange="test.bank",
        aggregate_type="payment",
        schema=SCHEMA,
        description="A payment was charged.",
        source="test.bank",
    )
    bank = ConsumerService(unique("bank"))
    bank.handles(placed.type, version=2)(lambda event: None)
    shop = ConsumerService(unique("shop"))
    shop.handles(charged.type, version=1)(lambda event: None)
    yield [placed, placed_v2, charged], [bank, shop]
    unregister_service(bank.name)
    unregister_service(shop.name)


def test_document_lists_exchanges_queues_and_who_sends_and_receives(world):
    event_types, services = world
    placed, _placed_v2, charged = event_types
    bank, _shop = services
    document = build_document(
        event_types=event_types, services=services, default_source="test.shop"
    )
    assert validate_document(document) == []

    channel = document["channels"][placed.type]
    assert channel["bindings"]["amqp"]["exchange"] == {
        "name": "test.shop",
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": "/",
    }
    assert sorted(channel["messages"]) == [f"{placed.type}.v1", f"{placed.type}.v2"]
    send = document["operations"][f"publish.{placed.type}"]
    assert send["action"] == "send" and send["x-producer"] == "test.shop"

    queue = document["channels"][bank.queue_name]
    assert queue["bindings"]["amqp"]["queue"]["name"] == bank.queue_name
    assert queue["x-bindings"] == [{"exchange": "test.shop", "routingKey": placed.type}]
    assert queue["x-arguments"]["x-queue-type"] == "quorum"
    assert list(queue["messages"]) == [f"{placed.type}.v2"]  # only the version it handles
    receive = document["operations"][f"receive.{bank.name}"]
    assert receive["action"] == "receive"
    assert receive["messages"] == [
        {"$ref": f"#/channels/{bank.queue_name}/messages/{placed.type}.v2"}
    ]
    assert bank.dead_letter_queue in document["channels"]

    message = document["components"]["messages"][f"{charged.type}.v1"]
    headers = message["headers"]["properties"]
    assert headers["ce-source"]["const"] == "test.bank"
    assert headers["ce-type"]["const"] == charged.type
    assert headers["ce-dataversion"]["const"] == 1
    assert "ce-id" in message["headers"]["required"]
    payload = document["components"]["schemas"][f"{charged.type}.v1.payload"]
    assert "$schema" not in payload and payload["required"] == ["id"]

    html = render_html(document)
    assert placed.type in html and bank.queue_name in html and "<script" not in html
    assert render_json(document) == render_json(document)  # deterministic


def test_validation_catches_a_broken_document(world):
    event_types, services = world
    document = build_document(event_types=event_types, services=services, default_source="x")
    operation = next(iter(document["operations"].values()))
    operation["action"] = "publish"  # AsyncAPI 2 wording: invalid in 3.0
    document["channels"][event_types[0].type]["messages"]["dangling"] = {
        "$ref": "#/components/messages/nope"
    }
    problems = validate_document(document)
    assert any("'publish' is not one of" in p or "action" in p for p in problems), problems
    assert "unresolved $ref #/components/messages/nope" in problems
