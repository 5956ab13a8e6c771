"""``setup_broker`` declares each service's queues, with the right arguments, idempotently."""

import shutil
import subprocess
from urllib.parse import unquote, urlparse

import amqp
import pytest
from django.core.management import CommandError, call_command

from outbox.conf import get_settings
from outbox.consumer.tests.conftest import consumer_db
from outbox.consumer.tests.support import (
    broker_connection,
    event_message,
    get_all,
    publish,
    queue_depth,
)
from outbox.consumer.topology import (
    dead_queue_arguments,
    events_queue_arguments,
    retry_queue_arguments,
)

pytestmark = consumer_db


def redeclare(name: str, arguments: dict) -> None:
    """Declare ``name`` again; RabbitMQ refuses (406) if the arguments differ from the queue's."""
    conn = broker_connection()
    try:
        conn.channel().queue_declare(name, durable=True, auto_delete=False, arguments=arguments)
    finally:
        conn.close()


def test_setup_broker_declares_the_service_queues_idempotently(make_bed):
    # given a declared service whose topology does not exist yet
    bed = make_bed(declare=False, delivery_limit=7, max_retries=2)
    service = bed.service
    # when setup_broker runs, twice
    call_command("setup_broker", stdout=open("/dev/null", "w"))  # noqa: SIM115
    call_command("setup_broker", stdout=open("/dev/null", "w"))  # noqa: SIM115
    # then every queue exists (passive declare) and is empty
    queues = [service.queue_name, service.dead_letter_queue, *service.retry_queues]
    assert queues[2:] == [f"{service.name}.retry.1", f"{service.name}.retry.2"]
    assert [queue_depth(queue) for queue in queues] == [0, 0, 0, 0]
    # and each has exactly the declared arguments (an equal re-declare is accepted)
    redeclare(service.queue_name, events_queue_arguments(service))
    redeclare(service.dead_letter_queue, dead_queue_arguments(service))
    redeclare(service.retry_queue(1), retry_queue_arguments(service))
    assert events_queue_arguments(service) == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 7,
        "x-dead-letter-exchange": f"{service.name}.dlx",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    # and the events queue is bound to the handled type on the producer's exchange
    publish(event_message(bed.placed), exchange=bed.exchange, routing_key=bed.placed.type)
    publish(event_message(bed.charged), exchange=bed.exchange, routing_key=bed.charged.type)
    assert queue_depth(service.queue_name) == 1


@pytest.mark.parametrize(
    "change",
    [{"x-queue-type": "classic"}, {"x-delivery-limit": 99}, {"x-dead-letter-exchange": "other"}],
    ids=["classic", "delivery-limit", "dead-letter-exchange"],
)
def test_the_events_queue_is_quorum_with_its_delivery_limit_and_dlx(bed, change):
    # given the declared queue: a declaration differing in one argument is refused by RabbitMQ
    arguments = {**events_queue_arguments(bed.service), **change}
    with pytest.raises(amqp.exceptions.PreconditionFailed):
        redeclare(bed.service.queue_name, arguments)


def _vhost() -> str:
    """The virtual host the tests' broker URL names ("/" when none)."""
    return unquote(urlparse(get_settings().broker_url).path[1:]) or "/"


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl")
def test_rabbitmqctl_shows_the_arguments(bed):
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", _vhost(), "name", "type", "arguments"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if listing.returncode != 0:
        pytest.skip(f"rabbitmqctl cannot reach the node: {listing.stderr.strip()}")
    lines = {line.split("\t")[0]: line for line in listing.stdout.splitlines()}
    events = lines[bed.service.queue_name]
    assert "quorum" in events
    assert "x-delivery-limit" in events
    assert "at-least-once" in events
    retry = lines[bed.service.retry_queue(1)]
    assert bed.service.queue_name in retry  # dead-letters back into the events queue


def test_delivery_limit_dead_letters_a_message_that_is_never_acknowledged(make_bed):
    # given a service with a delivery limit of 2 and a message no worker ever acknowledges
    # (the crash-loop case: the worker dies on it every time, before any ack or retry copy)
    bed = make_bed(delivery_limit=2)
    message = event_message(bed.placed)
    publish(message, exchange=bed.exchange, routing_key=bed.placed.type)
    conn = broker_connection()
    try:
        channel = conn.channel()
        # when it is delivered and returned without an ack, again and again
        for _ in range(10):
            delivery = channel.basic_get(bed.service.queue_name)
            if delivery is None:
                break
            channel.basic_reject(delivery.delivery_tag, requeue=True)
    finally:
        conn.close()
    # then the broker dead-letters it into <service>.dead, at-least-once, with its reason
    (dead,) = get_all(bed.service.dead_letter_queue)
    assert dead.properties["message_id"] == message.properties["message_id"]
    assert dead.properties["application_headers"]["x-first-death-reason"] == "delivery_limit"
    assert queue_depth(bed.service.queue_name) == 0


def test_a_worker_does_not_declare_queues_and_says_what_to_run(make_bed):
    # given a service whose topology was never declared
    bed = make_bed(declare=False)
    # when its worker starts, then it stops with a clear message instead of creating the queue
    with pytest.raises(CommandError, match=r"run `manage\.py setup_broker` first"):
        call_command("consume_events", "--service", bed.service.name, "--exit-when-idle", "1")
