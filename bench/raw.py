"""The baseline: the fastest raw publish of the same messages from Python, no database.

One confirm-mode channel: publish a window of messages (persistent, ``mandatory``), then read
the socket until every delivery tag of the window is acked, and go on. Two ways to write:

* ``raw_publish``: py-amqp's ``basic_publish`` per message, the messages built beforehand;
* ``raw_publish_frames``: the frames of every message encoded beforehand (``outbox.framing``,
  the relay's own encoder) and each window written with one socket write. Only the broker and
  the socket are left in the timed part: the limit of this broker from one Python connection.

The relay does the same plus claiming, encoding and marking rows in PostgreSQL.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque

import amqp

from bench.common import amqp_connect
from outbox.framing import encode_properties, publish_frames


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


def _confirm_channel(conn: amqp.Connection) -> tuple[amqp.Channel, _Confirms]:
    channel = conn.channel()
    channel.confirm_select()
    confirms = _Confirms()
    channel.events["basic_ack"].add(confirms.on_ack)
    channel.events["basic_nack"].add(confirms.on_nack)
    channel.events["basic_return"].add(confirms.on_return)
    return channel, confirms


def _result(writer: str, count: int, window: int, elapsed: float, confirms: _Confirms) -> dict:
    return {
        "messages": count,
        "writer": writer,
        "window": window,
        "seconds": round(elapsed, 3),
        "msg_per_s": round(count / elapsed, 1),
        "nacked": confirms.nacked,
        "returned": confirms.returned,
    }


def raw_publish(messages: list[tuple[amqp.Message, str, str]], *, window: int) -> dict:
    """Publish ``(message, exchange, routing_key)`` items with confirms every ``window``."""
    with contextlib.closing(amqp_connect("bench-raw")) as conn:
        channel, confirms = _confirm_channel(conn)
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
    return _result("basic_publish", len(messages), window, elapsed, confirms)


def raw_publish_frames(messages: list[tuple[amqp.Message, str, str]], *, window: int) -> dict:
    """The same messages, their frames encoded before the clock starts, one write per window."""
    with contextlib.closing(amqp_connect("bench-raw-frames")) as conn:
        channel, confirms = _confirm_channel(conn)
        frames = [
            publish_frames(
                body=message.body,
                properties=encode_properties(message.properties),
                channel_id=channel.channel_id,
                frame_max=conn.frame_max,
                exchange=exchange,
                routing_key=routing_key,
                mandatory=True,
            )
            for message, exchange, routing_key in messages
        ]
        windows = [b"".join(frames[i : i + window]) for i in range(0, len(frames), window)]
        tag = 0
        started = time.perf_counter()
        for index, data in enumerate(windows):
            size = min(window, len(messages) - index * window)
            confirms.unsettled.extend(range(tag + 1, tag + size + 1))
            tag += size
            conn.transport.write(data)
            while confirms.unsettled:
                conn.drain_events(timeout=30)
        elapsed = time.perf_counter() - started
    return _result("frames", len(messages), window, elapsed, confirms)
