"""One Celery worker per service: a ``ConsumerStep`` enabled by ``--consume-service <name>``.

    celery -A fitness worker --consume-service payments -Q celery-payments -c 1

Why a bootstep consuming in the worker's *main* process rather than handing each event to a
Celery task: the handler's transaction, the inbox row and the ack are one sequence in one place
(ack after commit is then trivial), events of an aggregate are taken in queue order instead of
being shuffled across pool processes, and there is no second hop through the broker (a task
message per event would double broker traffic and need its own idempotency). The price: one
worker handles one event at a time — scale by running more workers on the same queue (competing
consumers; ordering then relies on the per-aggregate lock and ``RetryLater``, see
docs/consumers.md). The pool (``-c 1``) stays for ordinary Celery tasks of the service.
"""

from typing import Any

import click
from celery import Celery, bootsteps


class ServiceConsumerStep(bootsteps.ConsumerStep):
    """Consumes ``<service>.events`` through the shared dispatcher (see outbox.consumer.worker)."""

    def __init__(
        self,
        parent: Any,
        consume_service: str | None = None,
        metrics_port: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.service_name = consume_service
        self.enabled = bool(consume_service)
        self.metrics_port = metrics_port
        self.metrics_served = False
        self.dispatcher: Any = None
        super().__init__(parent, **kwargs)

    def start(self, c: Any) -> None:
        # The main process runs the dispatcher, so it serves the metrics (not the pool's
        # children). Once: start() runs again after every broker reconnect.
        from outbox import metrics

        port = metrics.port_from(self.metrics_port)
        if port is not None and not self.metrics_served:
            metrics.serve(port)
            self.metrics_served = True
        super().start(c)

    def get_consumers(self, channel: Any) -> list[Any]:
        # Imported here: Django is set up by the time the worker's consumer starts.
        from outbox.consumer.dispatcher import Dispatcher
        from outbox.consumer.service import get_service
        from outbox.consumer.worker import build_consumer, ensure_queue_exists

        service = get_service(self.service_name or "")
        ensure_queue_exists(channel, service)
        if self.dispatcher is None:  # kept across reconnects (its publisher reconnects itself)
            self.dispatcher = Dispatcher(service)
        return [build_consumer(channel, self.dispatcher)]

    def shutdown(self, c: Any) -> None:
        super().shutdown(c)
        if self.dispatcher is not None:
            self.dispatcher.close()


def install(app: Celery) -> None:
    """Add the ``--consume-service`` worker option and the step to ``app``."""
    app.user_options["worker"].add(
        click.Option(
            ["--consume-service"],
            default=None,
            help="Consume this outbox consumer service's queue (<name>.events) in this worker.",
        )
    )
    app.user_options["worker"].add(
        click.Option(
            ["--metrics-port"],
            default=None,
            help="With --consume-service: serve Prometheus metrics on this port, path /metrics "
            "(env OUTBOX_METRICS_PORT).",
        )
    )
    app.steps["consumer"].add(ServiceConsumerStep)
