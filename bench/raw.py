"""The baseline: the fastest raw publish of the same messages from Python, no database.

py-amqp on one confirm-mode channel: publish a window of messages (persistent, ``mandatory``),
then read the socket until every delivery tag of the window is acked, and go on. That is the
best a single Python publisher can do against this broker with confirms on; the relay does the
same plus claiming and marking rows in PostgreSQL.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque

import amqp

from bench.common import amqp_connect


class _Confirms:
    """Counts settled delivery tags (acks may cover several: ``multiple``)."""

    def __init__(self) -> None:
        self.unsettled: deque[int] = deque()
        self.singles: set[int] = set()
        self.nacked = 0
        self.returned = 0

    def on_ack(self, tag: int, multiple: bool) -> None:
        if multiple:
            while self.unsettled and self.unsettled[0] <= tag:
                self.unsettled.popleft()
        else:
            self.singles.add(tag)
        while self.unsettled and self.unsettled[0] in self.singles:
            self.singles.discard(self.unsettled.popleft())

    def on_nack(self, tag: int, multiple: bool) -> None:
        self.nacked += 1
        self.on_ack(tag, multiple)

    def on_return(self, *args: object) -> None:
        self.returned += 1


def raw_publish(messages: list[tuple[amqp.Message, str, str]], *, window: int) -> dict:
    """Publish ``(message, exchange, routing_key)`` items with confirms every ``window``."""
    with contextlib.closing(amqp_connect("bench-raw")) as conn:
        channel = conn.channel()
        channel.confirm_select()
        confirms = _Confirms()
        channel.events["basic_ack"].add(confirms.on_ack)
        channel.events["basic_nack"].add(confirms.on_nack)
        channel.events["basic_return"].add(confirms.on_return)
        tag = 0
        started = time.perf_counter()
        for start in range(0, len(messages), window):
            for message, exchange, routing_key in messages[start : start + window]:
                tag += 1
                confirms.unsettled.append(tag)
                channel.basic_publish(
                    message, exchange=exchange, routing_key=routing_key, mandatory=True
                )
            while confirms.unsettled:
                conn.drain_events(timeout=30)
        elapsed = time.perf_counter() - started
    return {
        "messages": len(messages),
        "window": window,
        "seconds": round(elapsed, 3),
        "msg_per_s": round(len(messages) / elapsed, 1),
        "nacked": confirms.nacked,
        "returned": confirms.returned,
    }
