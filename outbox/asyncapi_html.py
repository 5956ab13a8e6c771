"""A plain, self-contained HTML page rendered from the generated AsyncAPI document.

No JavaScript, no external assets: one table of event types (exchange, producer, receivers),
one of service queues (bindings, arguments), then every message with its headers and a flattened
view of its payload schema (field path, type, required, constraints).
"""

import json
from html import escape
from typing import Any

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}code{font-size:.9em}h3{margin-top:2rem}
.muted{color:#666}
""".strip()


def render_html(document: dict[str, Any]) -> str:
    """The whole page (a string ending in a newline)."""
    info = document["info"]
    components = document.get("components", {})
    messages = components.get("messages", {})
    schemas = components.get("schemas", {})
    channels = document.get("channels", {})
    operations = document.get("operations", {})
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(info['title'])} {escape(info['version'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(info['title'])} <span class='muted'>{escape(info['version'])}</span></h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        '<p class="muted">Generated from the event registry and the consumer services by '
        "<code>python manage.py asyncapi</code> (AsyncAPI "
        f"{escape(document['asyncapi'])}); do not edit by hand.</p>",
        "<h2>Servers</h2>",
        _table(
            ["name", "host", "protocol", "description"],
            [
                [
                    _code(name),
                    _code(server["host"]),
                    escape(f"{server['protocol']} {server.get('protocolVersion', '')}".strip()),
                    escape(server.get("description", "")),
                ]
                for name, server in sorted(document.get("servers", {}).items())
            ],
        ),
        "<h2>Event types</h2>",
        _table(
            ["routing key", "exchange", "producer", "receivers", "versions"],
            _event_rows(channels, operations),
        ),
        "<h2>Service queues</h2>",
        _table(
            ["queue", "service", "bindings (exchange → routing key)", "arguments"],
            _queue_rows(channels),
        ),
        "<h2>Messages</h2>",
    ]
    for name, message in sorted(messages.items()):
        parts.append(_message_section(name, message, schemas))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _event_rows(channels: dict, operations: dict) -> list[list[str]]:
    receivers: dict[str, list[str]] = {}
    for operation in operations.values():
        if operation["action"] != "receive":
            continue
        for ref in operation.get("messages", []):
            receivers.setdefault(ref["$ref"].rsplit("/", 1)[-1], []).append(
                operation.get("x-service", "")
            )
    producers = {
        op["channel"]["$ref"].rsplit("/", 1)[-1]: op.get("x-producer", "")
        for op in operations.values()
        if op["action"] == "send"
    }
    rows = []
    for name, channel in sorted(channels.items()):
        amqp = channel.get("bindings", {}).get("amqp", {})
        if amqp.get("is") != "routingKey":
            continue
        versions = sorted(channel.get("messages", {}))
        who = sorted({svc for version in versions for svc in receivers.get(version, [])})
        rows.append(
            [
                _code(channel["address"]),
                _code(amqp["exchange"]["name"]) + f" ({escape(amqp['exchange']['type'])})",
                _code(producers.get(name, "")),
                ", ".join(_code(svc) for svc in who) or "—",
                ", ".join(f'<a href="#{escape(v)}">{escape(v)}</a>' for v in versions),
            ]
        )
    return rows


def _queue_rows(channels: dict) -> list[list[str]]:
    rows = []
    for _name, channel in sorted(channels.items()):
        amqp = channel.get("bindings", {}).get("amqp", {})
        if amqp.get("is") != "queue":
            continue
        bindings = "<br>".join(
            f"{_code(b['exchange'])} → {_code(b['routingKey']) or '(fanout)'}"
            for b in channel.get("x-bindings", [])
        )
        arguments = "<br>".join(
            f"{_code(key)}={_code(json.dumps(value))}"
            for key, value in sorted(channel.get("x-arguments", {}).items())
        )
        rows.append(
            [
                _code(channel["address"]),
                _code(channel.get("x-service", "")),
                bindings or "—",
                arguments or "—",
            ]
        )
    return rows


def _message_section(name: str, message: dict, schemas: dict) -> str:
    payload = message.get("payload", {})
    if "$ref" in payload:
        payload = schemas.get(payload["$ref"].rsplit("/", 1)[-1], {})
    headers = message.get("headers", {})
    return "\n".join(
        [
            f'<h3 id="{escape(name)}">{escape(message.get("title", name))}</h3>',
            f"<p>{escape(message.get('summary', ''))}</p>",
            "<p>Payload (<code>application/json</code>):</p>",
            _table(["field", "type", "required", "constraints", "description"], _fields(payload)),
            "<p>Headers (CloudEvents binary mode):</p>",
            _table(["header", "type", "required", "constraints", "description"], _fields(headers)),
        ]
    )


def _fields(schema: dict, path: str = "") -> list[list[str]]:
    """Flatten an object schema into one row per field (nested objects and arrays included)."""
    rows = []
    required_names = set(schema.get("required", []))
    for name, sub in schema.get("properties", {}).items():
        field_path = f"{path}.{name}" if path else name
        rows.append(_field_row(field_path, sub, name in required_names))
        if sub.get("type") == "object":
            rows += _fields(sub, field_path)
        elif sub.get("type") == "array" and isinstance(sub.get("items"), dict):
            rows += _fields(sub["items"], f"{field_path}[]")
    return rows


def _field_row(path: str, schema: dict, required: bool) -> list[str]:
    type_ = schema.get("type", "any")
    if isinstance(type_, list):
        type_ = " | ".join(type_)
    constraints = [
        f"{key}: {json.dumps(schema[key])}"
        for key in (
            "const",
            "enum",
            "format",
            "pattern",
            "minimum",
            "maximum",
            "minLength",
            "maxLength",
            "minItems",
            "maxItems",
        )
        if key in schema
    ]
    if schema.get("additionalProperties") is False:
        constraints.append("no other fields")
    return [
        _code(path),
        escape(str(type_)),
        "yes" if required else "",
        "<br>".join(_code(c) for c in constraints),
        escape(schema.get("description", "")),
    ]


def _table(headings: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headings)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _code(text: str) -> str:
    return f"<code>{escape(text)}</code>" if text else ""
