"""The one list of integration event types: what each is, its schema, version and exchange.

Producing apps declare their event types in an ``events`` module (autodiscovered by
``OutboxConfig.ready``); the relay never needs the registry (outbox rows are self-contained), but
recording, ``setup_broker`` and the generated docs do.
"""

import threading
from dataclasses import dataclass, field

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from outbox.exceptions import EventTypeConflict, OutboxError, UnknownEventType
from outbox.framing import SHORTSTR_MAX_BYTES, fits_shortstr


@dataclass(frozen=True)
class EventType:
    """The contract of one version of one integration event."""

    type: str  # e.g. "orders.order.placed" (also the routing key)
    version: int  # schema major version -> CloudEvents extension `dataversion`
    exchange: str  # e.g. "fitness.orders" (durable topic exchange)
    aggregate_type: str  # e.g. "order"
    # Excluded from the hash because dicts are unhashable; equality still compares it.
    schema: dict = field(hash=False)  # JSON Schema (draft 2020-12) of the payload
    description: str  # one sentence, for generated docs
    # CloudEvents `source`: the producing service. Empty means OUTBOX_SOURCE, the process's own
    # name; a split-out service living in the same code base names itself here.
    source: str = ""

    @property
    def routing_key(self) -> str:
        """The AMQP routing key events of this type are published with (the type itself)."""
        return self.type


_lock = threading.Lock()
_registry: dict[tuple[str, int], EventType] = {}
_validators: dict[tuple[str, int], Draft202012Validator] = {}


def register(event_type: EventType) -> EventType:
    """Register ``event_type`` and return it, so it can be used as ``X = register(EventType(...))``.

    Registering the same (or an equal) definition again is a no-op, because ``events`` modules may
    be imported more than once; a *different* definition under the same type and version raises
    :class:`EventTypeConflict` — changing a published contract needs a new version.
    """
    _check_definition(event_type)
    key = (event_type.type, event_type.version)
    with _lock:
        existing = _registry.get(key)
        if existing is not None:
            if existing != event_type:
                raise EventTypeConflict(
                    f"{event_type.type} v{event_type.version} is already registered "
                    "with a different definition"
                )
            return existing
        _registry[key] = event_type
        _validators[key] = Draft202012Validator(
            event_type.schema, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
    return event_type


def unregister(event_type: EventType) -> None:
    """Forget ``event_type`` (meant for tests that register throw-away types)."""
    key = (event_type.type, event_type.version)
    with _lock:
        if _registry.get(key) == event_type:
            del _registry[key]
            del _validators[key]


def get_event_type(type: str, version: int) -> EventType:
    """Return the registered event type, or raise :class:`UnknownEventType`."""
    try:
        return _registry[(type, version)]
    except KeyError:
        raise UnknownEventType(f"no event type {type!r} version {version} is registered") from None


def all_event_types() -> list[EventType]:
    """Every registered event type, sorted by type then version (stable for generated docs)."""
    with _lock:
        return sorted(_registry.values(), key=lambda et: (et.type, et.version))


def get_validator(event_type: EventType) -> Draft202012Validator:
    """The compiled payload validator of a registered event type (compiled once, at register)."""
    registered = get_event_type(event_type.type, event_type.version)
    if registered != event_type:
        raise UnknownEventType(
            f"{event_type.type} v{event_type.version} differs from the registered definition"
        )
    return _validators[(event_type.type, event_type.version)]


def _check_definition(event_type: EventType) -> None:
    """Reject definitions that would only fail later, at record or publish time."""
    for name in ("type", "exchange", "aggregate_type"):
        if not getattr(event_type, name):
            raise OutboxError(f"EventType.{name} must not be empty ({event_type!r})")
    # The exchange (and the type, as routing key and `type` property, and the source, as
    # `app_id`) travel as AMQP shortstrs: over 255 bytes, no row of the type could be published.
    for name in ("type", "exchange", "source"):
        value = getattr(event_type, name)
        if not fits_shortstr(value):
            raise OutboxError(
                f"EventType.{name} is {len(value.encode('utf-8', 'surrogatepass'))} bytes of "
                f"UTF-8, AMQP carries at most {SHORTSTR_MAX_BYTES} ({value[:40]!r}...)"
            )
    if event_type.version < 1:
        raise OutboxError(f"{event_type.type}: version must be >= 1")
    try:
        Draft202012Validator.check_schema(event_type.schema)
    except SchemaError as exc:
        raise OutboxError(f"{event_type.type} v{event_type.version}: bad schema: {exc}") from exc
