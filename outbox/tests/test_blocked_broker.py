"""A broker that stops reading (a memory or disk alarm) never hangs the publisher.

RabbitMQ under a resource alarm stops reading publishing connections but keeps them open:
py-amqp waits for an answer (to a close, to an exchange check) without a timeout, and a relay
stuck there ignores SIGTERM (``test_relay_process.py`` has the relay's own test).
"""

import threading
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from django.db import transaction

from outbox.broker import CLOSE_TIMEOUT
from outbox.conf import get_settings
from outbox.models import OutboxMessage
from outbox.publisher import Publisher, RoundResult
from outbox.recording import record_event

from .helpers import TcpProxy, bind_queue, make_payload

pytestmark = pytest.mark.django_db(transaction=True)

CONFIRM_TIMEOUT = 1.0


def record(event_type, aggregate_id: str) -> OutboxMessage:
    with transaction.atomic():
        return record_event(event_type, aggregate_id=aggregate_id, payload=make_payload())


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """A proxy to RabbitMQ the test can freeze."""
    proxy = TcpProxy(("127.0.0.1", 5672))
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def publisher(proxy: TcpProxy) -> Iterator[Publisher]:
    """A connected publisher whose broker connection goes through ``proxy``."""
    vhost = urlparse(get_settings().broker_url).path
    publisher = Publisher(
        url=f"amqp://guest:guest@127.0.0.1:{proxy.port}{vhost}",
        confirm_timeout=CONFIRM_TIMEOUT,
        max_message_bytes=10**6,
    )
    publisher.connect()
    yield publisher
    proxy.frozen.clear()  # a call the test gave up on gets its answer and ends
    publisher.close()


def within(seconds: float, call) -> tuple[bool, object]:
    """Run ``call`` in a thread: (whether it returned within ``seconds``, what it returned)."""
    returned: list[object] = []
    thread = threading.Thread(target=lambda: returned.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), returned[0] if returned else None


def assert_given_up_in_time(publisher: Publisher, row: OutboxMessage) -> None:
    """Publishing ``row`` gives the connection up after the confirm timeout (not waiting for the
    broker forever), the row left for later."""
    started = time.monotonic()
    returned, result = within(CONFIRM_TIMEOUT + 5, lambda: publisher.publish([row]))
    assert returned, "the publisher waited for the broker's answer without a bound"
    assert time.monotonic() - started < CONFIRM_TIMEOUT + 1
    assert isinstance(result, RoundResult)
    assert isinstance(result.connection_error, TimeoutError)
    assert [m.id for m in result.unsettled] == [row.id]
    assert not publisher.connected


def test_a_connection_without_confirms_is_dropped_without_waiting_for_the_broker(
    event_type, broker, publisher, proxy
):
    bind_queue(broker, event_type.exchange)
    assert publisher.publish([record(event_type, "o-1")]).published

    # When the broker stops reading while a row waits for its confirm
    proxy.frozen.set()

    # Then the publisher gives up after the confirm timeout, without the close handshake
    assert_given_up_in_time(publisher, record(event_type, "o-2"))


def test_an_exchange_check_waits_for_the_broker_a_bounded_time(
    make_event_type, broker, publisher, proxy
):
    known, new = make_event_type(), make_event_type()
    bind_queue(broker, known.exchange)
    assert publisher.publish([record(known, "o-1")]).published

    # When the broker stops reading and a row goes to an exchange not checked yet
    proxy.frozen.set()

    # Then the check gives up after the confirm timeout
    assert_given_up_in_time(publisher, record(new, "o-2"))


def test_a_graceful_close_waits_for_the_broker_a_bounded_time(event_type, broker, publisher, proxy):
    bind_queue(broker, event_type.exchange)
    assert publisher.publish([record(event_type, "o-1")]).published

    # When the broker stops reading and the publisher is closed (a relay's clean shutdown)
    proxy.frozen.set()
    started = time.monotonic()
    returned, _ = within(CLOSE_TIMEOUT + 5, publisher.close)

    # Then the close gives up waiting for the broker's close-ok after CLOSE_TIMEOUT
    assert returned, "close() waited for the broker's answer without a bound"
    assert time.monotonic() - started < CLOSE_TIMEOUT + 1
    assert not publisher.connected


def test_a_write_the_broker_does_not_read_gives_the_connection_up_in_time(
    event_type, broker, publisher, proxy
):
    # What bounds it: py-amqp sets TCP_USER_TIMEOUT (1 s) on its sockets, so data the peer does
    # not take (a zero window included) fails the write with ETIMEDOUT. A guard, should that
    # default ever change: the relay would then block in a write, deaf to SIGTERM.
    bind_queue(broker, event_type.exchange)
    assert publisher.publish([record(event_type, "o-1")]).published
    # given more rows than the sockets' buffers hold (~16 MB)
    with transaction.atomic():
        rows = [
            record_event(
                event_type,
                aggregate_id=f"big-{n}",
                payload={**make_payload(), "note": "x" * 400_000},
            )
            for n in range(40)
        ]

    # When the broker stops reading while they are written
    proxy.frozen.set()
    started = time.monotonic()
    returned, result = within(CONFIRM_TIMEOUT + 10, lambda: publisher.publish(rows))

    # Then the write fails within seconds instead of blocking for good, and every row is left
    # for later
    assert returned, "the publisher's socket write blocked without a bound"
    assert time.monotonic() - started < CONFIRM_TIMEOUT + 3
    assert isinstance(result, RoundResult) and result.connection_error is not None
    assert {m.id for m in result.unsettled} == {row.id for row in rows}
    assert not publisher.connected
