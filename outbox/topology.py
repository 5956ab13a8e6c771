"""Broker topology, declared once by ``manage.py setup_broker`` (never by whoever connects first).

A *topology contributor* is a function taking an open py-amqp channel and declaring what it owns,
idempotently. The outbox contributes one durable topic exchange per exchange used by a registered
event type; the consumer framework will add its queues, bindings and dead-letter queues by
registering contributors in its apps' ``topology`` modules (autodiscovered at start-up).
"""

from collections.abc import Callable

import amqp

from outbox.registry import all_event_types

TopologyContributor = Callable[[amqp.Channel], None]

_contributors: list[TopologyContributor] = []


def topology_contributor(func: TopologyContributor) -> TopologyContributor:
    """Register ``func`` to run on ``setup_broker`` (decorator; registering twice is a no-op)."""
    if func not in _contributors:
        _contributors.append(func)
    return func


def contributors() -> list[TopologyContributor]:
    """The registered contributors, in registration order (exchanges come first)."""
    return list(_contributors)


def declare_topology(channel: amqp.Channel) -> None:
    """Run every contributor on ``channel``; each declaration is idempotent."""
    for contributor in contributors():
        contributor(channel)


@topology_contributor
def declare_event_exchanges(channel: amqp.Channel) -> None:
    """Declare a durable topic exchange for every exchange a registered event type publishes to."""
    for exchange in sorted({event_type.exchange for event_type in all_event_types()}):
        channel.exchange_declare(exchange, "topic", durable=True, auto_delete=False)
