"""The event-contract lock and its compatibility rules (no database, no broker)."""

import copy
import json

import pytest
from django.core.management import CommandError, call_command

from outbox.contracts import build_lock, check_contracts, compare_schemas
from outbox.registry import EventType, register, unregister
from outbox.tests.helpers import unique

BASE = {
    "type": "object",
    "required": ["order_id", "status"],
    "properties": {
        "order_id": {"type": "integer"},
        "status": {"type": "string", "enum": ["paid", "shipped"]},
        "note": {"type": "string", "maxLength": 100},
        "lines": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["sku"],
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
            },
        },
    },
}


def changed(edit) -> dict:
    schema = copy.deepcopy(BASE)
    edit(schema)
    return schema


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: s["properties"].pop("note"), "$.note: field removed"),
        (lambda s: s["properties"]["order_id"].update(type="string"), "$.order_id: retyped"),
        (lambda s: s["required"].append("note"), "$.note: field made required"),
        (lambda s: s["required"].remove("status"), "$.status: required field made optional"),
        (
            lambda s: (s["properties"].update(tax={"type": "string"}), s["required"].append("tax")),
            "$.tax: new required field",
        ),
        (lambda s: s["properties"]["status"].update(enum=["paid"]), "$.status: enum narrowed"),
        (lambda s: s["properties"]["note"].update(maxLength=10), "maxLength tightened"),
        (lambda s: s["properties"]["note"].update(pattern="^a"), "$.note: pattern changed"),
        (lambda s: s.update(additionalProperties=False), "additionalProperties restricted"),
        (
            lambda s: s["properties"]["lines"]["items"]["properties"].pop("qty"),
            "$.lines[].qty: field removed",
        ),
        (
            lambda s: s["properties"]["lines"]["items"]["properties"]["sku"].update(type="integer"),
            "$.lines[].sku: retyped from string to integer",
        ),
    ],
)
def test_incompatible_changes_are_reported(edit, expected):
    problems = compare_schemas(BASE, changed(edit))
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["properties"].update(coupon={"type": "string"}),  # new optional field
        lambda s: s["properties"]["status"]["enum"].append("delivered"),  # enum widened
        lambda s: s["properties"]["note"].update(maxLength=500),  # bound loosened
        lambda s: s["properties"]["note"].update(description="Free text."),  # documentation
        lambda s: s["properties"]["lines"].pop("minItems"),  # bound dropped
    ],
)
def test_compatible_changes_pass(edit):
    assert compare_schemas(BASE, changed(edit)) == []


def event_type(type_: str, schema: dict, version: int = 1) -> EventType:
    return EventType(
        type=type_,
        version=version,
        exchange="test.contracts",
        aggregate_type="thing",
        schema=schema,
        description="A thing happened.",
    )


def test_check_reports_breaking_unlocked_and_stale_entries():
    name = unique("test.thing.happened")
    lock = build_lock([event_type(name, BASE)])
    assert check_contracts(lock, [event_type(name, BASE)]).ok

    broken = check_contracts(lock, [event_type(name, changed(lambda s: s["required"].pop()))])
    assert broken.breaking and not broken.ok

    extended = changed(lambda s: s["properties"].update(coupon={"type": "string"}))
    compatible = check_contracts(lock, [event_type(name, extended)])
    assert not compatible.breaking and compatible.compatible and not compatible.ok

    v2 = check_contracts(lock, [event_type(name, BASE), event_type(name, {"type": "object"}, 2)])
    assert not v2.breaking and v2.unlocked == [
        f"{name} v2: not in the lock yet (run with --update)"
    ]

    gone = check_contracts(lock, [])
    assert "no longer registered" in gone.breaking[0]


@pytest.fixture
def registered():
    """Register throw-away event types for the command tests; unregister them afterwards."""
    created: list[EventType] = []

    def make(et: EventType) -> EventType:
        created.append(register(et))
        return et

    yield make
    for et in created:
        unregister(et)


def test_command_catches_a_deliberately_broken_schema(tmp_path, registered):
    """The lock holds v1; v1's schema is then broken (field removed): the command fails."""
    name = unique("test.thing.happened")
    lock_path = tmp_path / "lock.json"
    published = registered(event_type(name, BASE))
    call_command("check_event_contracts", "--lock", str(lock_path), "--update")
    assert name in json.loads(lock_path.read_text())["events"]
    call_command("check_event_contracts", "--lock", str(lock_path))  # clean

    unregister(published)
    registered(event_type(name, changed(lambda s: s["properties"].pop("note"))))
    with pytest.raises(CommandError, match=r"(?s)incompatible.*\$\.note: field removed"):
        call_command("check_event_contracts", "--lock", str(lock_path))
    with pytest.raises(CommandError, match="incompatible"):  # --update refuses it too
        call_command("check_event_contracts", "--lock", str(lock_path), "--update")


def test_command_updates_the_lock_for_an_optional_field(tmp_path, registered):
    name = unique("test.thing.happened")
    lock_path = tmp_path / "lock.json"
    published = registered(event_type(name, BASE))
    call_command("check_event_contracts", "--lock", str(lock_path), "--update")
    unregister(published)
    extended = changed(lambda s: s["properties"].update(coupon={"type": "string"}))
    registered(event_type(name, extended))
    with pytest.raises(CommandError, match="out of date"):
        call_command("check_event_contracts", "--lock", str(lock_path))
    call_command("check_event_contracts", "--lock", str(lock_path), "--update")
    call_command("check_event_contracts", "--lock", str(lock_path))
    locked = json.loads(lock_path.read_text())["events"][name]["1"]["schema"]
    assert "coupon" in locked["properties"]
