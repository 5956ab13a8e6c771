"""Least-privilege RabbitMQ users: one per process kind, with permissions derived from the code.

RabbitMQ grants three regular expressions per user and virtual host, matched against the names
of exchanges and queues:

- **configure** — declare/delete a queue or exchange;
- **write** — publish to an exchange (the default exchange is ``amq.default``); bind a queue;
- **read** — consume from or purge a queue; bind a queue to an exchange (the exchange side).

Passive declares need no permission. The users planned here (docs/security.md has the table):

- ``relay`` — write every producer exchange; nothing else;
- ``<service>`` — configure/read its own queues (``<svc>.events``, ``.dead``, ``.retry.N``) and
  its Celery queues; write its dead-letter exchange, the default exchange (retry copies) and its
  own producer exchange(s);
- ``web`` — read every ``<svc>.dead`` and write the default exchange (the admin's dead-letter
  collect/requeue and replay); ``/healthz`` only connects;
- ``beat`` / ``maintenance`` — the maintenance task queue; maintenance also reads ``<svc>.dead``.

The topology itself is declared by ``setup_broker`` with an administrator's URL, never by these
users. This module only *computes* users and permissions (pure functions); the
``setup_broker_users`` command applies them with ``rabbitmqctl`` or the management HTTP API.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

if TYPE_CHECKING:  # imported by settings modules: keep this module free of Django at run time
    from outbox.consumer.service import ConsumerService
    from outbox.registry import EventType

# A service worker is also a Celery worker (``-Q celery-<service> -n <service>@%h``): it declares
# and consumes its task queue and Celery's remote-control ("pidbox") queue and exchanges, and
# publishes worker events to ``celeryev`` once a monitor (Flower) enables them.
CELERY_WORKER_PATTERNS = [
    r"{queue}",
    r"{node}@.+\.celery\.pidbox",
    r"celery\.pidbox",
    r"reply\.celery\.pidbox",
    r"celeryev",
]


def celery_worker_patterns(node: str, queue: str) -> list[str]:
    """What a Celery worker named ``node@host`` consuming task queue ``queue`` touches."""
    return [p.format(node=re.escape(node), queue=re.escape(queue)) for p in CELERY_WORKER_PATTERNS]


NOTHING = "^$"


@dataclass(frozen=True)
class BrokerUser:
    """One RabbitMQ user and its permissions on one virtual host."""

    name: str  # RabbitMQ user name, e.g. "fitness-payments"
    kind: str  # "relay", "web" or the consumer service's name
    configure: str
    write: str
    read: str
    description: str

    @property
    def password_env(self) -> str:
        """The environment variable holding this user's password (``BROKER_PASSWORD_<KIND>``)."""
        return password_env(self.kind)


def password_env(kind: str) -> str:
    """``BROKER_PASSWORD_PAYMENTS`` for ``payments`` (dots and dashes become underscores)."""
    return "BROKER_PASSWORD_" + re.sub(r"[^A-Za-z0-9]", "_", kind).upper()


def local_password(user_name: str) -> str:
    """The documented default password for local use only (``make run``): ``<user>-local``."""
    return f"{user_name}-local"


def any_of(names: Iterable[str]) -> str:
    """A regex matching exactly ``names`` (already-escaped patterns), or nothing when empty."""
    alternatives = sorted(set(names))
    return f"^({'|'.join(alternatives)})$" if alternatives else NOTHING


def relay_user(prefix: str, exchanges: Iterable[str]) -> BrokerUser:
    """The relay publishes every outbox row: write on every producer exchange, nothing else."""
    return BrokerUser(
        name=f"{prefix}relay",
        kind="relay",
        configure=NOTHING,
        write=any_of(re.escape(exchange) for exchange in exchanges),
        read=NOTHING,
        description="relay_outbox: publishes outbox rows to the producer exchanges",
    )


def web_user(prefix: str, dead_letter_queues: Iterable[str] = ()) -> BrokerUser:
    """The web process: ``/healthz`` connects; the admin collects dead letters and requeues them.

    Collecting reads every ``<service>.dead``; requeue and replay publish copies to a service's
    queue through the default exchange (``amq.default``).
    """
    return BrokerUser(
        name=f"{prefix}web",
        kind="web",
        configure=NOTHING,
        write=any_of([r"amq\.default"]) if dead_letter_queues else NOTHING,
        read=any_of(re.escape(queue) for queue in dead_letter_queues),
        description="web: /healthz, the admin's dead-letter collect/requeue and replay",
    )


def service_user(
    prefix: str,
    service: str,
    *,
    produces: Iterable[str] = (),
    celery: bool = True,
) -> BrokerUser:
    """A consumer service's worker (see the module docstring for what each regex allows).

    ``produces`` are the exchanges the service publishes its own events to (used when it runs
    a relay of its own, e.g. with a database of its own).
    """
    s = re.escape(service)
    retry = rf"{s}\.retry\.[0-9]+"
    worker = celery_worker_patterns(service, f"celery-{service}") if celery else []
    return BrokerUser(
        name=f"{prefix}{service}",
        kind=service,
        configure=any_of([rf"{s}\.events", rf"{s}\.dead", rf"{s}\.dlx", retry, *worker]),
        # Retry copies go through the default exchange (routing key = retry queue), dead copies
        # through <service>.dlx; the service's own events through its producer exchange(s).
        write=any_of(
            [rf"{s}\.dlx", rf"{s}\.dead", retry, r"amq\.default", *worker]
            + [re.escape(exchange) for exchange in produces]
        ),
        read=any_of([rf"{s}\.events", rf"{s}\.dead", retry, *worker]),
        description=f"worker of the {service} service",
    )


def beat_user(prefix: str, maintenance_queue: str) -> BrokerUser:
    """Celery beat: sends the scheduled maintenance tasks to their queue, nothing else.

    A task routed by queue name only is published through the default exchange.
    """
    queue = re.escape(maintenance_queue)
    return BrokerUser(
        name=f"{prefix}beat",
        kind="beat",
        configure=any_of([queue]),
        write=any_of([queue, r"amq\.default"]),
        read=any_of([queue]),
        description=f"celery beat: schedules maintenance tasks on {maintenance_queue}",
    )


def maintenance_user(
    prefix: str, maintenance_queue: str, dead_letter_queues: Iterable[str]
) -> BrokerUser:
    """The maintenance worker: its task queue, and reading every ``<service>.dead`` (collect)."""
    worker = celery_worker_patterns("maintenance", maintenance_queue)
    return BrokerUser(
        name=f"{prefix}maintenance",
        kind="maintenance",
        configure=any_of(worker),
        write=any_of(worker),
        read=any_of(worker + [re.escape(queue) for queue in dead_letter_queues]),
        description="maintenance worker: collects dead letters, prunes old events",
    )


def url_with_credentials(url: str, user: str, password: str) -> str:
    """``url`` (``amqp://u:p@host:port/vhost``) with its credentials replaced."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def plan_users(
    prefix: str,
    services: Iterable["ConsumerService"],
    event_types: Iterable["EventType"],
    *,
    produces: dict[str, list[str]] | None = None,
    celery: bool = True,
    maintenance_queue: str | None = "celery-maintenance",
) -> list[BrokerUser]:
    """Every user: relay, one per consumer service, web, and (Celery) beat and maintenance.

    A service produces, by default, the exchanges of the event types named ``<service>.*`` (e.g.
    ``payments.payment.authorized``); ``produces`` overrides that per service.
    """
    event_types = list(event_types)
    services = list(services)
    exchanges = sorted({et.exchange for et in event_types})
    dead_queues = [service.dead_letter_queue for service in services]
    users = [relay_user(prefix, exchanges)]
    for service in services:
        own = (produces or {}).get(service.name)
        if own is None:
            own = sorted(
                {et.exchange for et in event_types if et.type.split(".")[0] == service.name}
            )
        users.append(service_user(prefix, service.name, produces=own, celery=celery))
    users.append(web_user(prefix, dead_queues))
    if celery and maintenance_queue:
        users.append(beat_user(prefix, maintenance_queue))
        users.append(maintenance_user(prefix, maintenance_queue, dead_queues))
    return users
