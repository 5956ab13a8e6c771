"""Waking the relay: a NOTIFY, or the broker's socket while confirms are outstanding."""

import socket

import pytest
from django.db import connection

from outbox.wakeup import Wakeup

pytestmark = pytest.mark.django_db(transaction=True)


class StopAfter:
    """A should_stop that gives up after ``slices`` waits, so a broken wait cannot hang."""

    def __init__(self, slices: int) -> None:
        self.left = slices

    def __call__(self) -> bool:
        self.left -= 1
        return self.left < 0


def test_a_readable_broker_socket_ends_the_wait_without_a_notify():
    wakeup = Wakeup()
    broker_side, relay_side = socket.socketpair()
    try:
        wakeup.prime()
        broker_side.send(b"\x01")  # a confirm arrived
        should_stop = StopAfter(200)

        assert wakeup.wait(60, should_stop, also=[relay_side.fileno()]) is False
        assert should_stop.left == 199  # it returned on the first slice, not at the timeout
    finally:
        wakeup.close()
        broker_side.close()
        relay_side.close()


def test_a_notify_ends_the_wait_and_is_reported():
    wakeup = Wakeup()
    broker_side, relay_side = socket.socketpair()
    try:
        wakeup.prime()
        with connection.cursor() as cursor:
            cursor.execute("NOTIFY outbox")

        assert wakeup.wait(60, StopAfter(200), also=[relay_side.fileno()]) is True
        # And the notification was consumed: the next wait does not see it again
        assert wakeup.wait(0.3, StopAfter(200)) is False
    finally:
        wakeup.close()
        broker_side.close()
        relay_side.close()
