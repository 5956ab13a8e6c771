"""The AsyncAPI 3.0 document of every exchange, queue, binding and event, generated from code.

Sources of truth: the event registry (:func:`outbox.registry.all_event_types`: type, version,
exchange, schema, producing service) and the consumer services
(:func:`outbox.consumer.service.all_services`: queues, bindings, which service receives what).
Nothing here is written by hand, so the document cannot drift from what ``setup_broker`` declares.

Shape of the document:

- one **channel per event type** (address = routing key) on the producer's topic exchange, with
  one message per schema version, and a ``send`` operation by the producing service;
- one **channel per service queue** (``<svc>.events``, quorum) with the messages it receives, its
  bindings (``x-bindings``) and arguments (``x-arguments``), and a ``receive`` operation; the
  dead-letter queue ``<svc>.dead`` as a channel of its own;
- ``components.messages``: payload = the registered JSON Schema, headers = the CloudEvents
  binary-mode AMQP headers (``ce-*``), AMQP message bindings.

Project details (title, servers...) come from the ``OUTBOX_ASYNCAPI`` setting (a dict, see
:data:`DEFAULT_INFO`); the output is deterministic (sorted keys) so it can be committed and
compared in CI.
"""

import copy
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from jsonschema import Draft7Validator

from outbox.conf import get_settings
from outbox.consumer.service import ConsumerService, all_services
from outbox.consumer.topology import (
    dead_queue_arguments,
    events_queue_arguments,
    retry_queue_arguments,
)
from outbox.registry import EventType, all_event_types
from outbox.signing import KEY_ID_HEADER, SIGNATURE_HEADER

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"

DEFAULT_INFO: dict[str, Any] = {
    "title": "Integration events",
    "version": "1.0.0",
    "description": "Events published through the transactional outbox.",
    "servers": {
        "local": {
            "host": "127.0.0.1:5672",
            "protocol": "amqp",
            "protocolVersion": "0-9-1",
            "pathname": "/",
            "description": "RabbitMQ (default virtual host).",
        }
    },
}

# Headers every event carries (CloudEvents 1.0 binary mode over AMQP, see docs/events.md).
_HEADER_PROPERTIES: dict[str, dict[str, Any]] = {
    "ce-id": {
        "type": "string",
        "format": "uuid",
        "description": "Event id (CloudEvents `id`), also the AMQP `message_id`.",
    },
    "ce-source": {"type": "string", "description": "The producing service."},
    "ce-type": {"type": "string", "description": "Event type, also the routing key."},
    "ce-specversion": {"type": "string", "const": "1.0"},
    "ce-time": {"type": "string", "format": "date-time", "description": "When it happened."},
    "ce-subject": {"type": "string", "description": "The aggregate's id."},
    "ce-dataversion": {"type": "integer", "description": "Schema major version of the payload."},
    "ce-sequence": {
        "type": "integer",
        "minimum": 1,
        "description": "Per-aggregate sequence number, gap-free, in commit order.",
    },
    "ce-aggregatetype": {"type": "string", "description": "The aggregate's type."},
    "ce-correlationid": {
        "type": "string",
        "description": "Shared by every event of one saga (the id of its first event).",
    },
    "ce-causationid": {
        "type": "string",
        "description": "The event that caused this one (absent for a saga's first event).",
    },
    "ce-traceparent": {"type": "string", "description": "W3C trace context."},
    "traceparent": {"type": "string", "description": "W3C trace context (plain header)."},
    SIGNATURE_HEADER: {
        "type": "string",
        "pattern": "^v1=[0-9a-f]{64}$",
        "description": "HMAC-SHA256 by the producing service over the envelope and payload "
        "(canonical form); consumers dead-letter an event that does not verify.",
    },
    KEY_ID_HEADER: {
        "type": "string",
        "description": "Id of the producing service's key that made the signature (rotation).",
    },
}
_REQUIRED_HEADERS = [
    "ce-id",
    "ce-source",
    "ce-type",
    "ce-specversion",
    "ce-time",
    "ce-subject",
    "ce-dataversion",
    "ce-sequence",
    "ce-aggregatetype",
    "ce-correlationid",
    SIGNATURE_HEADER,
    KEY_ID_HEADER,
]


def project_info() -> dict[str, Any]:
    """``OUTBOX_ASYNCAPI`` merged over :data:`DEFAULT_INFO`."""
    return {**DEFAULT_INFO, **getattr(settings, "OUTBOX_ASYNCAPI", {})}


def message_id(event_type: EventType) -> str:
    """The component name of one version of one event type, e.g. ``orders.order.placed.v1``."""
    return f"{event_type.type}.v{event_type.version}"


def event_source(event_type: EventType, default_source: str) -> str:
    """The CloudEvents ``source`` events of this type carry."""
    return event_type.source or default_source


def _schema_for_document(schema: dict[str, Any]) -> dict[str, Any]:
    """The payload schema as an AsyncAPI schema object (no ``$schema``/``$id`` of its own)."""
    cleaned = copy.deepcopy(schema)
    cleaned.pop("$schema", None)
    cleaned.pop("$id", None)
    return cleaned


def _headers_schema(event_type: EventType, source: str) -> dict[str, Any]:
    properties = copy.deepcopy(_HEADER_PROPERTIES)
    properties["ce-source"]["const"] = source
    properties["ce-type"]["const"] = event_type.type
    properties["ce-dataversion"]["const"] = event_type.version
    properties["ce-aggregatetype"]["const"] = event_type.aggregate_type
    return {"type": "object", "required": list(_REQUIRED_HEADERS), "properties": properties}


def _message(event_type: EventType, source: str) -> dict[str, Any]:
    return {
        "name": event_type.type,
        "title": f"{event_type.type} v{event_type.version}",
        "summary": event_type.description,
        "contentType": "application/json",
        "headers": _headers_schema(event_type, source),
        "payload": {"$ref": f"#/components/schemas/{message_id(event_type)}.payload"},
        "correlationId": {
            "description": "The saga's correlation id.",
            "location": "$message.header#/ce-correlationid",
        },
        "bindings": {
            "amqp": {"messageType": event_type.type, "bindingVersion": AMQP_BINDING_VERSION}
        },
        "x-event-version": event_type.version,
        "x-aggregate-type": event_type.aggregate_type,
        "x-source": source,
    }


def _exchange_binding(exchange: str, vhost: str) -> dict[str, Any]:
    return {
        "amqp": {
            "is": "routingKey",
            "exchange": {
                "name": exchange,
                "type": "topic",
                "durable": True,
                "autoDelete": False,
                "vhost": vhost,
            },
            "bindingVersion": AMQP_BINDING_VERSION,
        }
    }


def _queue_binding(name: str, vhost: str) -> dict[str, Any]:
    return {
        "amqp": {
            "is": "queue",
            "queue": {
                "name": name,
                "durable": True,
                "exclusive": False,
                "autoDelete": False,
                "vhost": vhost,
            },
            "bindingVersion": AMQP_BINDING_VERSION,
        }
    }


def _message_refs(event_types: list[EventType]) -> dict[str, Any]:
    return {
        message_id(et): {"$ref": f"#/components/messages/{message_id(et)}"} for et in event_types
    }


def _channel_message_refs(channel: str, event_types: list[EventType]) -> list[dict[str, str]]:
    return [{"$ref": f"#/channels/{channel}/messages/{message_id(et)}"} for et in event_types]


def _consumers_of(services: list[ConsumerService]) -> dict[tuple[str, int], list[str]]:
    result: dict[tuple[str, int], list[str]] = {}
    for service in services:
        for key in service.handled_types():
            result.setdefault(key, []).append(service.name)
    return result


def build_document(
    *,
    event_types: list[EventType] | None = None,
    services: list[ConsumerService] | None = None,
    default_source: str | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the AsyncAPI 3.0 document (a JSON-ready dict) of the registry and the services.

    Every argument defaults to the live registry, services and settings; tests pass their own.
    """
    event_types = all_event_types() if event_types is None else event_types
    services = all_services() if services is None else services
    default_source = get_settings().source if default_source is None else default_source
    info = project_info() if info is None else info
    vhost = info.get("vhost", "/")
    consumers = _consumers_of(services)

    by_type: dict[str, list[EventType]] = {}
    for event_type in event_types:
        by_type.setdefault(event_type.type, []).append(event_type)

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}

    for type_, versions in sorted(by_type.items()):
        exchange = versions[-1].exchange
        source = event_source(versions[-1], default_source)
        for event_type in versions:
            messages[message_id(event_type)] = _message(
                event_type, event_source(event_type, default_source)
            )
            schemas[f"{message_id(event_type)}.payload"] = _schema_for_document(event_type.schema)
        receivers = sorted({name for et in versions for name in consumers.get(_key(et), [])})
        channels[type_] = {
            "address": type_,
            "title": type_,
            "description": (
                f"Routing key `{type_}` on the topic exchange `{exchange}`. "
                f"Published by `{source}`; received by "
                + (", ".join(f"`{name}`" for name in receivers) or "no service yet")
                + "."
            ),
            "messages": _message_refs(versions),
            "bindings": _exchange_binding(exchange, vhost),
        }
        operations[f"publish.{type_}"] = {
            "action": "send",
            "title": f"{source} publishes {type_}",
            "summary": versions[-1].description,
            "channel": {"$ref": f"#/channels/{type_}"},
            "messages": _channel_message_refs(type_, versions),
            "bindings": {
                "amqp": {
                    "deliveryMode": 2,
                    "mandatory": True,
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
            "x-producer": source,
        }

    for service in services:
        received = [et for et in event_types if _key(et) in set(service.handled_types())]
        queue = service.queue_name
        channels[queue] = {
            "address": queue,
            "title": f"{service.name} queue",
            "description": (
                f"Durable quorum queue of the `{service.name}` service. Retries wait in "
                f"`{service.name}.retry.1` … `{service.name}.retry.{service.max_retries}`; "
                f"events that cannot be handled go through `{service.dead_letter_exchange}` to "
                f"`{service.dead_letter_queue}`."
            ),
            "messages": _message_refs(received),
            "bindings": _queue_binding(queue, vhost),
            "x-service": service.name,
            "x-arguments": events_queue_arguments(service),
            "x-bindings": [
                {"exchange": et.exchange, "routingKey": et.routing_key}
                for et in sorted(received, key=lambda et: (et.exchange, et.routing_key))
            ],
            "x-retry-queues": {
                "names": service.retry_queues,
                "arguments": retry_queue_arguments(service),
            },
        }
        operations[f"receive.{service.name}"] = {
            "action": "receive",
            "title": f"{service.name} consumes {queue}",
            "channel": {"$ref": f"#/channels/{queue}"},
            "messages": _channel_message_refs(queue, received),
            "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
            "x-service": service.name,
        }
        dead = service.dead_letter_queue
        channels[dead] = {
            "address": dead,
            "title": f"{service.name} dead letters",
            "description": (
                f"Events `{service.name}` could not handle, with `x-death-reason`; fed by the "
                f"fanout exchange `{service.dead_letter_exchange}`. Kept until an operator "
                "requeues or purges them."
            ),
            "messages": _message_refs(received),
            "bindings": _queue_binding(dead, vhost),
            "x-service": service.name,
            "x-arguments": dead_queue_arguments(service),
            "x-bindings": [{"exchange": service.dead_letter_exchange, "routingKey": ""}],
        }

    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": info["title"],
            "version": info["version"],
            "description": info["description"],
        },
        "defaultContentType": "application/json",
        "servers": info["servers"],
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
    return document


def _key(event_type: EventType) -> tuple[str, int]:
    return (event_type.type, event_type.version)


def render_json(document: dict[str, Any]) -> str:
    """The document as stable, pretty JSON (sorted keys, trailing newline)."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


SPEC_SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "asyncapi-3.0.0.json"


def validate_document(document: dict[str, Any]) -> list[str]:
    """Every problem with ``document``: the AsyncAPI 3.0.0 JSON Schema, then what it cannot say.

    The JSON Schema (vendored from ``@asyncapi/specs``, see outbox/schemas/README.md) checks the
    structure; on top of it: every local ``$ref`` resolves, and every operation's messages
    belong to the operation's channel (rules the AsyncAPI parser adds to the schema).
    """
    spec = json.loads(SPEC_SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = Draft7Validator(spec)
    problems = [
        f"{'/'.join(str(part) for part in error.absolute_path) or '$'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    ]
    for ref in sorted(_local_refs(document)):
        if _resolve(document, ref) is None:
            problems.append(f"unresolved $ref {ref}")
    for name, operation in document.get("operations", {}).items():
        channel_ref = operation.get("channel", {}).get("$ref", "")
        for message in operation.get("messages", []):
            if not message.get("$ref", "").startswith(f"{channel_ref}/messages/"):
                problems.append(f"operations/{name}: {message} is not a message of {channel_ref}")
    return problems


def _local_refs(node: Any) -> set[str]:
    refs: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/"):
                refs.add(value)
            else:
                refs |= _local_refs(value)
    elif isinstance(node, list):
        for item in node:
            refs |= _local_refs(item)
    return refs


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
