"""The faults: each one is injected against the running stack and returns what it did, and when.

``started``/``ended`` are wall-clock times (``time.time()``), comparable with the database's
timestamps: the fault's window, used to measure recovery and latency (chaos/check.py).
"""

from __future__ import annotations

import json
import random
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import amqp

from chaos.stack import Stack

if TYPE_CHECKING:
    from outbox.registry import EventType

POISON_HEADER = "x-chaos-poison"
# The poison kinds, and what the dead letter's reason must say: each poison is dead-lettered for
# its own fault (a schema violation that died as "unsigned" would prove nothing).
POISON_REASONS = {
    "malformed-json": "malformed JSON body",
    "unknown-type": "no handler for event type",
    "schema-violation": "payload fails the schema",
    "bad-signature": "signature check failed: bad signature",
}


@dataclass
class Fault:
    """One injected fault."""

    kind: str
    started: float
    ended: float
    target: str = ""
    note: str = ""
    hit: bool = True  # False when a test hook was not reached (the fault still happened)


@dataclass
class Injected:
    """Everything the checker needs to know about injected messages."""

    poison: list[tuple[str, str, str]] = field(default_factory=list)  # (service, id, kind)
    copies: list[tuple[str, int]] = field(default_factory=list)  # (event id, subscribers)


class Faults:
    """The fault injectors, bound to a stack and a random generator."""

    def __init__(self, stack: Stack, rng: random.Random, *, short: bool) -> None:
        self.stack = stack
        self.rng = rng
        self.short = short
        self.injected = Injected()
        self.kinds: dict[str, Callable[[], Fault]] = {
            "relay-kill": self.relay_kill,
            "relay-kill-after-publish": self.relay_kill_after_publish,
            "worker-kill": self.worker_kill,
            "worker-kill-before-ack": self.worker_kill_before_ack,
            "worker-sigstop": self.worker_sigstop,
            "rabbitmq-restart": self.rabbitmq_restart,
            "postgres-restart": self.postgres_restart,
            "duplicates": self.duplicates,
            "poison": self.poison,
        }

    # -- relays ------------------------------------------------------------------------------
    def relay_kill(self) -> Fault:
        """SIGKILL one of the two relays at a random moment (often mid-batch), restart it."""
        relay = self.rng.choice(self.stack.relays)
        started = time.time()
        relay.kill()
        time.sleep(self.rng.uniform(0.5, 2.0))
        relay.start()
        return Fault("relay-kill", started, time.time(), relay.name)

    def relay_kill_after_publish(self) -> Fault:
        """A third relay that pauses between the broker's confirms and marking: SIGKILL it there.

        Its rows were published but are still pending: the other relays publish them again
        (same message id), and every consumer must absorb the duplicates.
        """
        started = time.time()  # its partitions stall from its first batch until it dies
        extra = self.stack.extra_relay(OUTBOX_TEST_PAUSE_AFTER_PUBLISH="120")
        hit = extra.wait_log("pausing", timeout=20)
        extra.kill()
        note = "killed between publish and mark" if hit else "hook not reached in 20 s"
        return Fault("relay-kill-after-publish", started, time.time(), extra.name, note, hit)

    # -- workers -----------------------------------------------------------------------------
    def _service(self) -> str:
        return self.rng.choice(self.stack.services)

    def worker_kill(self) -> Fault:
        """SIGKILL a service's worker (its prefetched deliveries return to the queue), restart."""
        service = self._service()
        worker = self.stack.workers[service]
        started = time.time()
        worker.kill()
        time.sleep(self.rng.uniform(0.5, 2.0))
        worker.start()
        return Fault("worker-kill", started, time.time(), service)

    def worker_kill_before_ack(self) -> Fault:
        """Replace a worker by one that pauses after its commit and before the ack; SIGKILL it
        there, start the regular worker again: the redelivery must be a duplicate."""
        service = self._service()
        worker = self.stack.workers[service]
        started = time.time()
        worker.stop()  # SIGTERM: it finishes the delivery in hand; the hooked one is then alone
        extra = self.stack.extra_worker(service, OUTBOX_TEST_PAUSE_BEFORE_ACK="120")
        hit = extra.wait_log("pausing before ack", timeout=30)
        extra.kill()
        worker.start()
        note = "killed after commit, before ack" if hit else "hook not reached in 30 s"
        return Fault("worker-kill-before-ack", started, time.time(), service, note, hit)

    def worker_sigstop(self) -> Fault:
        """SIGSTOP a worker for three heartbeats (the broker drops its connection and returns
        its unacknowledged deliveries), then SIGCONT: it must reconnect and carry on."""
        service = self._service()
        worker = self.stack.workers[service]
        seconds = 3 * self.stack.config.heartbeat + 1
        before = len(worker.log)
        started = time.time()
        worker.signal(signal.SIGSTOP)
        time.sleep(seconds)
        worker.signal(signal.SIGCONT)
        ended = time.time()
        # The worker notices the closed connection on its next read and reconnects.
        deadline = time.monotonic() + 10
        dropped = False
        while time.monotonic() < deadline and not dropped:
            dropped = (
                "connection lost" in worker.log[before:]
                or "Connection to broker lost" in (worker.log[before:])
            )
            time.sleep(0.2)
        note = f"stopped {seconds:.0f} s; " + (
            "broker dropped the connection, worker reconnected"
            if dropped
            else "no reconnect seen in the log"
        )
        return Fault("worker-sigstop", started, ended, service, note, dropped)

    # -- the servers -------------------------------------------------------------------------
    def rabbitmq_restart(self) -> Fault:
        """``rabbitmqctl stop_app``, a few seconds without a broker, ``start_app``."""
        outage = 2.0 if self.short else self.rng.uniform(3.0, 8.0)
        rabbitmqctl = self.stack.config.rabbitmqctl
        started = time.time()
        rabbitmqctl("stop_app", timeout=120)
        time.sleep(outage)
        rabbitmqctl("start_app", timeout=120)
        rabbitmqctl("await_startup", timeout=120)
        return Fault("rabbitmq-restart", started, time.time(), "rabbitmq", f"down {outage:.0f} s")

    def postgres_restart(self) -> Fault:
        """``pg_ctl restart -m immediate``: every connection dies, crash recovery."""
        started = time.time()
        self.stack.config.servers.postgres.restart_immediate()
        return Fault("postgres-restart", started, time.time(), "postgresql")

    # -- messages ----------------------------------------------------------------------------
    def duplicates(self) -> Fault:
        """Publish again, with the same message id, events every subscriber already handled —
        each aggregate's in reverse order (duplicates *and* out of order)."""
        from django.db import connections

        from outbox.consumer.models import InboxEntry
        from outbox.models import OutboxMessage
        from outbox.wire import to_amqp

        connections.close_all()  # a database restart may have broken them
        subscribers = subscription_map()
        count = 6 if self.short else 20
        # Early in a run few events are handled by all their subscribers yet: wait for some.
        deadline = time.monotonic() + 30
        while True:
            candidates = list(
                OutboxMessage.objects.filter(published_at__isnull=False).order_by("-id")[:400]
            )
            self.rng.shuffle(candidates)
            handled: dict[str, set[str]] = {}
            for event_id, service in InboxEntry.objects.filter(
                event_id__in=[m.event_id for m in candidates]
            ).values_list("event_id", "service"):
                handled.setdefault(str(event_id), set()).add(service)
            chosen = [
                m
                for m in candidates
                if subscribers.get(m.type)
                and subscribers[m.type] <= handled.get(str(m.event_id), set())
            ][:count]
            if len(chosen) == count or time.monotonic() > deadline:
                break
            time.sleep(1)
        # Out of order: every chosen aggregate's rows, latest first.
        chosen.sort(key=lambda m: (m.aggregate_type, m.aggregate_id, -m.sequence))
        started = time.time()
        with _broker() as channel:
            for message in chosen:
                channel.basic_publish_confirm(
                    to_amqp(message), exchange=message.exchange, routing_key=message.routing_key
                )
                self.injected.copies.append((str(message.event_id), len(subscribers[message.type])))
        note = f"{len(chosen)} events republished (latest first per aggregate)"
        return Fault("duplicates", started, time.time(), "exchanges", note, bool(chosen))

    def poison(self) -> Fault:
        """Malformed JSON, an unknown type, a payload failing its schema and a bad signature,
        straight into service queues: each must end in that service's dead-letter queue, for
        its own reason (``POISON_REASONS``), nothing else."""
        services = list(self.stack.services)
        self.rng.shuffle(services)
        started = time.time()
        with _broker() as channel:
            for service in services[: 2 if self.short else 3]:
                for kind in POISON_REASONS:
                    poison_id = str(uuid.uuid4())
                    channel.basic_publish_confirm(
                        _poison(kind, poison_id, service),
                        exchange="",
                        routing_key=f"{service}.events",
                    )
                    self.injected.poison.append((service, poison_id, kind))
        note = f"{len(self.injected.poison)} poison messages so far"
        return Fault("poison", started, time.time(), "service queues", note)


def subscription_map() -> dict[str, set[str]]:
    """Event type -> the services that handle it (from the declared consumer services)."""
    from outbox.consumer.service import all_services

    subscribers: dict[str, set[str]] = {}
    for service in all_services():
        for event_type, _version in service.handled_types():
            subscribers.setdefault(event_type, set()).add(service.name)
    return subscribers


class _broker:
    """A channel on the run's broker (context manager); publish with ``basic_publish_confirm``."""

    def __enter__(self) -> amqp.Channel:
        from outbox.broker import connect
        from outbox.conf import get_settings

        self.connection = connect(get_settings().broker_url)
        return self.connection.channel()

    def __exit__(self, *exc: object) -> None:
        from outbox.broker import close_quietly

        close_quietly(self.connection)


def _poison(kind: str, poison_id: str, service: str) -> amqp.Message:
    """A poison message. All but the malformed one are signed with the source's real key (as a
    buggy producer would send them), so they fail for their own reason; the bad signature is a
    handled type signed with the right key id and a wrong secret (its payload fails the schema
    too, but the signature is checked first).
    """
    from outbox.conf import get_settings

    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    source = get_settings().source
    envelope = {
        "ce-specversion": "1.0",
        "ce-id": poison_id,
        "ce-source": source,
        "ce-subject": "1",
        "ce-time": now,
        "ce-dataversion": 1,
        "ce-sequence": 1,
        "ce-correlationid": poison_id,
        POISON_HEADER: kind,
    }
    if kind == "malformed-json":
        body, headers = b'{"order_id": 1, "oops', {**envelope, "ce-type": "orders.order.placed"}
    elif kind == "unknown-type":
        body, headers = b"{}", {**envelope, "ce-type": "chaos.unknown.happened"}
    else:  # a type the service handles; a payload its schema refuses, or a bad signature
        event_type = _handled_type(service)
        body = json.dumps({"order_id": "not a number"}).encode()
        headers = {**envelope, "ce-type": event_type.type, "ce-source": _source_of(event_type)}
    message = amqp.Message(
        body,
        content_type="application/json",
        delivery_mode=2,
        message_id=poison_id,
        application_headers=headers,
    )
    return message if kind == "malformed-json" else _sign(message, forged=kind == "bad-signature")


def _handled_type(service: str) -> EventType:
    from outbox.consumer.service import get_service
    from outbox.registry import get_event_type

    return get_event_type(*get_service(service).handled_types()[0])


def _source_of(event_type: EventType) -> str:
    from outbox.conf import get_settings

    return event_type.source or get_settings().source


def _sign(message: amqp.Message, *, forged: bool) -> amqp.Message:
    from outbox.consumer.verification import sign_message
    from outbox.signing import SigningKey, get_keyring

    key = get_keyring().current(message.headers["ce-source"])
    if forged:
        key = SigningKey(key.source, key.key_id, b"chaos-forged-secret-" * 2)
    return sign_message(message, key)
