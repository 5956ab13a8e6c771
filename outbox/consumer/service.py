"""Declaring a consuming service and its handlers (the public API of the consumer framework).

    service = ConsumerService("payments", database="payments")

    @service.handles("orders.order.placed", version=1)
    def charge_for_order(event: ReceivedEvent) -> None: ...

Services are declared in ``consumers/<svc>/handlers.py`` and imported by the app's ``ready()``;
the declarations are all ``setup_broker`` and the worker need (queue, bindings, dispatch).
"""

import re
import threading
from collections.abc import Callable

from outbox.consumer.events import ReceivedEvent
from outbox.exceptions import OutboxError
from outbox.registry import EventType, get_event_type

Handler = Callable[[ReceivedEvent], None]
# ``hook(using)`` deletes a service's own derived state so it can be rebuilt from events.
ResetHook = Callable[[str], None]

# A service name becomes part of queue and exchange names: keep it to safe characters.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,80}$")

_lock = threading.Lock()
_services: dict[str, "ConsumerService"] = {}


class ConsumerService:
    """One consuming service: its handlers, its queues and its limits.

    ``database`` is the alias its handlers' transactions (and its inbox) use. ``delivery_limit``
    is the broker-side backstop (``x-delivery-limit``: deliveries that end without an ack, e.g. a
    worker crash loop, before RabbitMQ dead-letters the message); ``max_retries`` bounds the
    framework's own backoff retries; ``prefetch`` is the unacknowledged-delivery window.
    """

    def __init__(
        self,
        name: str,
        *,
        database: str = "default",
        delivery_limit: int = 5,
        prefetch: int = 16,
        max_retries: int = 8,
    ) -> None:
        if not _NAME.match(name):
            raise OutboxError(f"service name {name!r} must match {_NAME.pattern}")
        if delivery_limit < 1 or prefetch < 1 or max_retries < 0:
            raise OutboxError("delivery_limit and prefetch must be >= 1, max_retries >= 0")
        self.name = name
        self.database = database
        self.delivery_limit = delivery_limit
        self.prefetch = prefetch
        self.max_retries = max_retries
        self._handlers: dict[tuple[str, int], Handler] = {}
        self._reset_hooks: list[ResetHook] = []
        _register_service(self)

    def __repr__(self) -> str:
        return f"<ConsumerService {self.name} ({len(self._handlers)} handlers)>"

    @property
    def queue_name(self) -> str:
        """The durable quorum queue the service consumes."""
        return f"{self.name}.events"

    @property
    def dead_letter_queue(self) -> str:
        """Where events that cannot be handled end up (with ``x-death-reason``)."""
        return f"{self.name}.dead"

    @property
    def dead_letter_exchange(self) -> str:
        """The fanout exchange in front of ``dead_letter_queue`` (broker and framework use it)."""
        return f"{self.name}.dlx"

    def retry_queue(self, retry: int) -> str:
        """The delay queue holding events waiting for their ``retry``-th retry (1-based)."""
        return f"{self.name}.retry.{retry}"

    @property
    def retry_queues(self) -> list[str]:
        """One delay queue per retry level, so a short delay never waits behind a long one."""
        return [self.retry_queue(n) for n in range(1, self.max_retries + 1)]

    def handles(self, type: str, *, version: int) -> Callable[[Handler], Handler]:
        """Decorator: ``handler`` handles events of ``type`` at schema ``version``.

        The event type is looked up in the outbox registry lazily (at ``setup_broker`` and on
        consumption), so the producer's ``events`` module may be imported after this one.
        """

        def decorator(handler: Handler) -> Handler:
            key = (type, version)
            existing = self._handlers.get(key)
            if existing is not None and existing is not handler:
                raise OutboxError(f"{self.name} already handles {type} v{version} ({existing})")
            self._handlers[key] = handler
            return handler

        return decorator

    def on_reset(self, hook: ResetHook) -> ResetHook:
        """Register ``hook(using)``, which wipes the service's projection tables (optional).

        Usable as a decorator. ``manage.py rebuild_projection <service>`` runs every hook in one
        transaction on ``service.database`` (passed as ``using``) together with deleting the
        service's inbox rows, then replays the retained events to the service. Only services that
        registered a hook can be rebuilt; a hook must only touch the service's own tables.
        """
        if hook not in self._reset_hooks:
            self._reset_hooks.append(hook)
        return hook

    @property
    def reset_hooks(self) -> list[ResetHook]:
        """The hooks registered with :meth:`on_reset`, in registration order."""
        return list(self._reset_hooks)

    def handler_for(self, type: str, version: int) -> Handler | None:
        """The handler of ``(type, version)``, or None when the service does not handle it."""
        return self._handlers.get((type, version))

    def handled_types(self) -> list[tuple[str, int]]:
        """Every ``(type, version)`` the service has a handler for, sorted."""
        return sorted(self._handlers)

    def subscriptions(self) -> list[EventType]:
        """The registered event types behind the handlers: they define the queue's bindings.

        Raises :class:`~outbox.exceptions.UnknownEventType` for a handler whose type is not in
        the registry: a binding would be a guess, so ``setup_broker`` refuses.
        """
        return [get_event_type(type_, version) for type_, version in self.handled_types()]


def _register_service(service: ConsumerService) -> None:
    with _lock:
        if service.name in _services:
            raise OutboxError(f"a consumer service named {service.name!r} is already declared")
        _services[service.name] = service


def get_service(name: str) -> ConsumerService:
    """The declared service called ``name`` (raises OutboxError listing the known ones)."""
    try:
        return _services[name]
    except KeyError:
        known = ", ".join(sorted(_services)) or "none"
        raise OutboxError(f"no consumer service {name!r} is declared (known: {known})") from None


def all_services() -> list[ConsumerService]:
    """Every declared service, sorted by name."""
    with _lock:
        return [_services[name] for name in sorted(_services)]


def unregister_service(name: str) -> None:
    """Forget a service (for tests that declare throw-away services)."""
    with _lock:
        _services.pop(name, None)
