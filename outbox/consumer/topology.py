"""The queues of every consumer service, contributed to ``manage.py setup_broker``.

Per service ``<name>``::

    fitness.<producer> --(routing key = event type, one binding per handled type)--> <name>.events
    <name>.events --(delivery limit exceeded: broker dead-letters)--> <name>.dlx -> <name>.dead
    worker --(transient failure, retry n, per-message expiration)--> <name>.retry.<n>
    <name>.retry.<n> --(expired: dead-lettered via the default exchange)--> <name>.events
    worker --(terminal failure or retries exhausted, x-death-reason)--> <name>.dlx -> <name>.dead

Every queue is a durable quorum queue (replicated, survives a broker restart). Dead-lettering out
of a quorum queue is at-most-once by default; ``at-least-once`` (which requires
``x-overflow=reject-publish``) makes the broker keep a message until the dead-letter target
confirmed it — we want that both for ``<name>.events`` -> ``<name>.dead`` and for the retry queues,
which hand messages *back* to ``<name>.events`` that the worker has already acknowledged.
"""

from typing import Any

import amqp

from outbox.consumer.service import ConsumerService, all_services
from outbox.topology import topology_contributor

QUORUM = {"x-queue-type": "quorum"}
AT_LEAST_ONCE_DEAD_LETTERING = {
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}


def events_queue_arguments(service: ConsumerService) -> dict[str, Any]:
    """``<name>.events``: quorum, explicit delivery limit (3.10 has none by default), DLX."""
    return {
        **QUORUM,
        **AT_LEAST_ONCE_DEAD_LETTERING,
        "x-delivery-limit": service.delivery_limit,
        "x-dead-letter-exchange": service.dead_letter_exchange,
    }


def retry_queue_arguments(service: ConsumerService) -> dict[str, Any]:
    """``<name>.retry.<n>``: nobody consumes it; an expired message goes back to ``.events``."""
    return {
        **QUORUM,
        **AT_LEAST_ONCE_DEAD_LETTERING,
        "x-dead-letter-exchange": "",  # the default exchange routes by queue name
        "x-dead-letter-routing-key": service.queue_name,
    }


def dead_queue_arguments(service: ConsumerService) -> dict[str, Any]:
    """``<name>.dead``: a plain quorum queue, kept until an operator requeues or purges it."""
    return dict(QUORUM)


def declare_service(channel: amqp.Channel, service: ConsumerService) -> None:
    """Declare one service's exchanges, queues and bindings (idempotent)."""
    channel.exchange_declare(
        service.dead_letter_exchange, "fanout", durable=True, auto_delete=False
    )
    _queue(channel, service.dead_letter_queue, dead_queue_arguments(service))
    channel.queue_bind(service.dead_letter_queue, service.dead_letter_exchange, routing_key="")
    _queue(channel, service.queue_name, events_queue_arguments(service))
    for event_type in service.subscriptions():
        # Re-declaring the producer's exchange with the same arguments is a no-op; it lets a
        # service's topology be declared even before its producer's contributor ran.
        channel.exchange_declare(event_type.exchange, "topic", durable=True, auto_delete=False)
        channel.queue_bind(service.queue_name, event_type.exchange, event_type.routing_key)
    for name in service.retry_queues:
        _queue(channel, name, retry_queue_arguments(service))


def _queue(channel: amqp.Channel, name: str, arguments: dict[str, Any]) -> None:
    channel.queue_declare(
        name, durable=True, exclusive=False, auto_delete=False, arguments=arguments
    )


@topology_contributor
def declare_consumer_queues(channel: amqp.Channel) -> None:
    """Declare the queues of every declared consumer service."""
    for service in all_services():
        declare_service(channel, service)
