"""Fixtures: a throw-away service with its real queues on the real RabbitMQ, and a worker run."""

import contextlib
from collections.abc import Callable, Iterator

import amqp
import pytest

# Its table and processes (django-outbox-pattern), for the migration tests.
from outbox.consumer.tests.outbox_pattern_peer import outbox_pattern  # noqa: F401
from outbox.consumer.tests.support import TestBed, broker_connection, declare_test_bed, unique
from outbox.consumer.topology import declare_service
from outbox.consumer.worker import StandaloneWorker


@pytest.fixture(autouse=True)
def _fast_retries(settings):
    """Backoff in tens of milliseconds, so retry tests take well under a second."""
    settings.OUTBOX_CONSUMER_RETRY_BASE = 0.05
    settings.OUTBOX_CONSUMER_RETRY_MAX = 0.2


# Real commits (the dispatcher acks after commit; worker processes read what tests wrote), but
# only the outbox's and the inbox's tables are flushed after each test: ~0.05 s instead of ~1 s.
consumer_db = pytest.mark.django_db(transaction=True, available_apps=["outbox", "outbox.consumer"])


@pytest.fixture
def make_bed(django_db_blocker) -> Iterator[Callable[..., TestBed]]:
    """Declare test beds (service + event types + topology); delete all of it afterwards."""
    beds: list[TestBed] = []

    def make(*, declare: bool = True, **kwargs) -> TestBed:
        bed = declare_test_bed(unique("ctest"), unique("ctest.x"), **kwargs)
        beds.append(bed)
        if declare:
            conn = broker_connection()
            try:
                declare_service(conn.channel(), bed.service)
            finally:
                conn.close()
        return bed

    yield make
    for bed in beds:
        bed.unregister()
        delete_topology(bed)


@pytest.fixture
def bed(make_bed) -> TestBed:
    return make_bed()


@pytest.fixture
def superuser_client(client, django_user_model):
    """A test client logged in to the admin as the superuser ``ops``."""
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


def delete_topology(bed: TestBed) -> None:
    service = bed.service
    conn = broker_connection()
    try:
        queues = [service.queue_name, service.dead_letter_queue, *service.retry_queues]
        queues.append(f"celery-{service.name}")
        for queue in queues:
            with contextlib.suppress(amqp.exceptions.ChannelError):
                conn.channel().queue_delete(queue)
        for exchange in (service.dead_letter_exchange, bed.exchange):
            with contextlib.suppress(amqp.exceptions.ChannelError):
                conn.channel().exchange_delete(exchange)
    finally:
        conn.close()


def run_worker(bed: TestBed, idle: float = 0.3):
    """Run the standalone worker in this process until the queue has been idle for ``idle`` s."""
    return StandaloneWorker(bed.service, exit_when_idle=idle).run()
