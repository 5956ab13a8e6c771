"""Event contracts: a committed lock of every published (type, version) and a compatibility check.

Once a version of an event type is published, consumers and retained events depend on it. The
lock file (``docs/event-contracts.lock.json`` in this project) records, per type and version, the
exchange, aggregate type and payload schema. :func:`check_contracts` compares the registry with
the lock and reports every change that is not backward *and* forward compatible:

- a property removed, retyped (``type`` changed) or changed from required to optional;
- a new required property (events already published do not have it);
- an ``enum`` narrowed, a ``const`` or ``format`` changed, a ``pattern`` changed or added;
- a bound tightened (``minimum``, ``maxLength``, ``minItems``...), ``additionalProperties``
  newly forbidden or restricted;
- the exchange or aggregate type changed; a locked version no longer registered;
- any other keyword changed that the checker does not understand (to be safe).

Compatible within a version: adding an optional property, widening an ``enum`` (consumers must
tolerate unknown values), loosening a bound, editing ``description``/``title``/``examples``.
Anything else needs a new version (``version=2``) registered next to the old one.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outbox.registry import EventType

LOCK_FORMAT = 1

# Keywords that only document (or identify): changing them never breaks anyone.
_ANNOTATIONS = {"description", "title", "examples", "$comment", "deprecated", "default"}
_IGNORED = _ANNOTATIONS | {"$schema", "$id"}
# Lower bounds: raising or adding one tightens the schema.
_LOWER_BOUNDS = {"minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"}
# Upper bounds: lowering or adding one tightens the schema.
_UPPER_BOUNDS = {"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"}
# Handled explicitly below.
_STRUCTURAL = {"type", "properties", "required", "enum", "items", "additionalProperties"}
# Every other keyword (const, format, pattern, anyOf, $ref...) must stay exactly equal: a change
# may tighten or retype in ways not analysed here.


@dataclass
class ContractReport:
    """What :func:`check_contracts` found."""

    breaking: list[str] = field(default_factory=list)  # incompatible changes: fail
    unlocked: list[str] = field(default_factory=list)  # registered but not in the lock yet
    compatible: list[str] = field(default_factory=list)  # compatible changes (lock is stale)

    @property
    def ok(self) -> bool:
        """True when nothing is broken and the lock lists every registered version as is."""
        return not self.breaking and not self.unlocked and not self.compatible


def lock_entry(event_type: EventType) -> dict[str, Any]:
    """What the lock records about one version of one event type."""
    return {
        "exchange": event_type.exchange,
        "aggregate_type": event_type.aggregate_type,
        "schema": event_type.schema,
    }


def build_lock(event_types: list[EventType]) -> dict[str, Any]:
    """The lock document of ``event_types`` (``{"events": {type: {version: entry}}}``)."""
    events: dict[str, dict[str, Any]] = {}
    for event_type in event_types:
        events.setdefault(event_type.type, {})[str(event_type.version)] = lock_entry(event_type)
    return {"format": LOCK_FORMAT, "events": events}


def render_lock(lock: dict[str, Any]) -> str:
    """The lock as stable JSON (sorted keys, trailing newline)."""
    return json.dumps(lock, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def read_lock(path: Path) -> dict[str, Any]:
    """Read a lock file; a missing file is an empty lock."""
    if not path.exists():
        return {"format": LOCK_FORMAT, "events": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def check_contracts(lock: dict[str, Any], event_types: list[EventType]) -> ContractReport:
    """Compare the registered ``event_types`` with ``lock``."""
    report = ContractReport()
    locked: dict[str, dict[str, Any]] = lock.get("events", {})
    registered = {(et.type, et.version): et for et in event_types}
    for type_, versions in sorted(locked.items()):
        for version, entry in sorted(versions.items(), key=lambda item: int(item[0])):
            name = f"{type_} v{version}"
            event_type = registered.get((type_, int(version)))
            if event_type is None:
                report.breaking.append(
                    f"{name}: published version is no longer registered (consumers and retained "
                    "events still need it; keep it, or drop it from the lock with --update "
                    "--allow-removal once no event of it can be delivered again)"
                )
                continue
            problems: list[str] = []
            for key in ("exchange", "aggregate_type"):
                if entry.get(key) != getattr(event_type, key):
                    problems.append(
                        f"{key} changed: {entry.get(key)!r} -> {getattr(event_type, key)!r}"
                    )
            problems += compare_schemas(entry.get("schema", {}), event_type.schema)
            report.breaking += [f"{name}: {problem}" for problem in problems]
            if not problems and entry != lock_entry(event_type):
                report.compatible.append(f"{name}: compatible change (run with --update)")
    for (type_, version), _event_type in sorted(registered.items()):
        if str(version) not in locked.get(type_, {}):
            report.unlocked.append(f"{type_} v{version}: not in the lock yet (run with --update)")
    return report


def compare_schemas(old: Any, new: Any, path: str = "$") -> list[str]:
    """Every incompatible difference between two JSON Schemas of one payload (empty: compatible)."""
    if old == new:
        return []
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [f"{path}: schema changed from {old!r} to {new!r}"]
    problems: list[str] = []
    problems += _compare_type(old, new, path)
    problems += _compare_properties(old, new, path)
    problems += _compare_enum(old, new, path)
    problems += _compare_bounds(old, new, path)
    problems += _compare_additional(old, new, path)
    if "items" in old or "items" in new:
        if "items" not in new:
            pass  # dropping the item schema only loosens
        elif "items" not in old:
            problems.append(f"{path}[]: item schema added (tightens the array)")
        else:
            problems += compare_schemas(old["items"], new["items"], f"{path}[]")
    analysed = _IGNORED | _STRUCTURAL | _LOWER_BOUNDS | _UPPER_BOUNDS
    for key in sorted((set(old) | set(new)) - analysed):
        if old.get(key) != new.get(key):
            problems.append(f"{path}: {key} changed: {old.get(key)!r} -> {new.get(key)!r}")
    return problems


def _types(schema: dict[str, Any]) -> set[str] | None:
    value = schema.get("type")
    if value is None:
        return None
    return {value} if isinstance(value, str) else set(value)


def _compare_type(old: dict, new: dict, path: str) -> list[str]:
    old_types, new_types = _types(old), _types(new)
    if old_types == new_types:
        return []
    return [f"{path}: retyped from {_show(old_types)} to {_show(new_types)}"]


def _show(types: set[str] | None) -> str:
    return "any" if types is None else "/".join(sorted(types))


def _compare_properties(old: dict, new: dict, path: str) -> list[str]:
    problems = []
    old_props: dict = old.get("properties", {})
    new_props: dict = new.get("properties", {})
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    for name in sorted(old_props):
        if name not in new_props:
            problems.append(f"{path}.{name}: field removed")
            continue
        problems += compare_schemas(old_props[name], new_props[name], f"{path}.{name}")
    for name in sorted(new_required - old_required):
        label = "field made required" if name in old_props else "new required field"
        problems.append(f"{path}.{name}: {label}")
    for name in sorted(old_required - new_required):
        problems.append(f"{path}.{name}: required field made optional")
    return problems


def _compare_enum(old: dict, new: dict, path: str) -> list[str]:
    if "enum" not in new:
        return []  # none, or dropped: only loosens
    if "enum" not in old:
        return [f"{path}: enum added {new['enum']!r}"]
    missing = [value for value in old["enum"] if value not in new["enum"]]
    return [f"{path}: enum narrowed (removed {missing!r})"] if missing else []


def _compare_bounds(old: dict, new: dict, path: str) -> list[str]:
    problems = []
    for key in sorted(_LOWER_BOUNDS | _UPPER_BOUNDS):
        if key not in new or old.get(key) == new[key]:
            continue  # unchanged, or dropped (loosens)
        if key not in old:
            problems.append(f"{path}: {key} {new[key]!r} added")
        elif (key in _LOWER_BOUNDS and new[key] > old[key]) or (
            key in _UPPER_BOUNDS and new[key] < old[key]
        ):
            problems.append(f"{path}: {key} tightened from {old[key]!r} to {new[key]!r}")
    return problems


def _compare_additional(old: dict, new: dict, path: str) -> list[str]:
    old_value, new_value = (
        old.get("additionalProperties", True),
        new.get("additionalProperties", True),
    )
    if old_value == new_value or new_value is True:
        return []
    if old_value is True or new_value is False:
        return [f"{path}: additionalProperties restricted ({old_value!r} -> {new_value!r})"]
    return compare_schemas(old_value, new_value, f"{path}.*")
