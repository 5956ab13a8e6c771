"""The committed event contract documents are valid and match the code."""

import json

from django.conf import settings
from django.core.management import call_command

from outbox.asyncapi import build_document, render_json, validate_document
from outbox.asyncapi_html import render_html
from outbox.consumer.service import all_services
from outbox.registry import all_event_types

DOCS = settings.BASE_DIR / "docs"
REGENERATE = "python manage.py asyncapi --output docs/asyncapi.json --html docs/asyncapi.html"


def test_asyncapi_document_is_valid_and_up_to_date():
    document = build_document()
    assert validate_document(document) == []
    committed = (DOCS / "asyncapi.json").read_text(encoding="utf-8")
    assert committed == render_json(document), f"docs/asyncapi.json is stale: run `{REGENERATE}`"
    assert validate_document(json.loads(committed)) == []
    html = (DOCS / "asyncapi.html").read_text(encoding="utf-8")
    assert html == render_html(document), f"docs/asyncapi.html is stale: run `{REGENERATE}`"


def test_asyncapi_document_covers_every_event_and_service_queue():
    document = build_document()
    for event_type in all_event_types():
        assert event_type.type in document["channels"]
        assert f"{event_type.type}.v{event_type.version}" in document["components"]["messages"]
    for service in all_services():
        assert document["channels"][service.queue_name]["x-service"] == service.name
        assert document["operations"][f"receive.{service.name}"]["action"] == "receive"
    placed = document["channels"]["orders.order.placed"]
    assert placed["bindings"]["amqp"]["exchange"]["name"] == "fitness.orders"
    payments = document["channels"]["payments.events"]
    assert {"exchange": "fitness.orders", "routingKey": "orders.order.placed"} in payments[
        "x-bindings"
    ]


def test_published_event_versions_match_the_contract_lock():
    """Fails on an incompatible change of a published version (see docs/events.md)."""
    call_command("check_event_contracts")
