"""Test helpers: a real RabbitMQ, waiting, and a tiny TCP proxy to cut the network.

Child processes (a relay, workers, commands): :mod:`outbox.tests.processes`.
"""

import contextlib
import re
import selectors
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import amqp
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from outbox.broker import connect
from outbox.conf import get_settings
from outbox.leases import LOCK_NAMESPACE, PRESENCE_KEY
from outbox.queue import requeue

BASE_DIR = Path(__file__).resolve().parents[2]


def unmark_published(message_id: int) -> None:
    """Make a published row pending again, as if the relay had died between the broker's confirm
    and the mark: the relay publishes it once more (a duplicate with the same message id)."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE outbox_message SET published_at = NULL WHERE id = %s", [message_id])
    requeue([message_id])


@dataclass(frozen=True)
class IndexRead:
    """A node of a query plan that reads outbox_message or one of its indexes."""

    node_type: str
    index: str | None
    condition: str
    by_leading_column: bool  # an index probe on the index's first column, not a whole walk


def index_reads(cursor: object, plan: dict) -> list[IndexRead]:
    """How a JSON plan (``EXPLAIN (FORMAT JSON)``'s ``Plan``) reads outbox_message: a sequential
    scan, or a walk through a whole index (what PostgreSQL 15 does for ``aggregate_id = ...``
    alone on the (aggregate_type, aggregate_id, sequence) index), has ``by_leading_column``
    false. A bitmap heap scan only fetches what its index scans found: left out."""
    nodes = [plan]
    for node in nodes:
        nodes.extend(node.get("Plans", []))
    reads = []
    for node in nodes:
        index = node.get("Index Name")
        if node["Node Type"] == "Bitmap Heap Scan" or not (
            index or node.get("Relation Name") == "outbox_message"
        ):
            continue
        condition = node.get("Index Cond", "")
        leading = bool(index) and re.search(rf"\b{_leading_column(cursor, index)}\b", condition)
        reads.append(IndexRead(node["Node Type"], index, condition, bool(leading)))
    return reads


def _leading_column(cursor: object, index: str) -> str:
    cursor.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
        " WHERE c.relname = %s",
        [index],
    )
    return cursor.fetchone()[0]


def make_payload(order_id: str = "o-1", total: str = "10.00") -> dict:
    """A valid payload for the test event types of conftest."""
    return {"order_id": order_id, "total": total, "lines": [{"sku": "shoe", "quantity": 1}]}


def broker_connection() -> amqp.Connection:
    return connect(get_settings().broker_url)


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


def bind_queue(channel: amqp.Channel, exchange: str, routing_key: str = "#", **arguments) -> str:
    """An exclusive, server-named queue bound to ``exchange``: what the test consumes from."""
    queue, _, _ = channel.queue_declare("", exclusive=True, arguments=arguments or None)
    channel.queue_bind(queue, exchange, routing_key)
    return queue


def get_messages(
    channel: amqp.Channel, queue: str, count: int, timeout: float = 10.0
) -> list[amqp.Message]:
    """Read until ``count`` messages arrived (or ``timeout``), then ack them all."""
    received: list[amqp.Message] = []
    deadline = time.monotonic() + timeout
    while len(received) < count and time.monotonic() < deadline:
        message = channel.basic_get(queue, no_ack=True)
        if message is None:
            time.sleep(0.02)
        else:
            received.append(message)
    return received


def sequences_by_subject(messages: list[amqp.Message]) -> dict[str, list[int]]:
    """The ``ce-sequence`` of each aggregate's messages, in the order they arrived."""
    sequences: dict[str, list[int]] = {}
    for message in messages:
        headers = message.properties["application_headers"]
        sequences.setdefault(headers["ce-subject"], []).append(headers["ce-sequence"])
    return sequences


def wait_for(condition: Callable[[], object], timeout: float = 15.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")


def partitions_by_relay() -> dict[int, list[int]]:
    """Which relay session (pid) holds which partition locks right now, read from PostgreSQL."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s AND objsubid = 2 AND objid::bigint <> %s"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " ORDER BY objid",
            [LOCK_NAMESPACE, PRESENCE_KEY],
        )
        held: dict[int, list[int]] = {}
        for pid, partition in cursor.fetchall():
            held.setdefault(pid, []).append(partition)
        return held


def database_url() -> str:
    """The URL of the database the tests run on (pytest-django's test database)."""
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class TcpProxy:
    """Forwards a local port to RabbitMQ; can refuse connections and cut the live ones, or
    freeze: stop reading every side and accepting, sockets left open. A frozen proxy is what a
    broker under a memory or disk alarm looks like to a publisher: it stops reading the
    connection (the kernel still acknowledges the bytes); here nothing comes back either."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()  # nothing listens on `port` until start(): connections are refused
        self._server: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self.frozen = threading.Event()  # set: nothing is read, forwarded or accepted
        self._thread: threading.Thread | None = None
        self.connections = 0

    def start(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and cut every connection (as if the broker went away)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for sock in [*self._sockets, self._server]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self._sockets, self._server = [], None

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        assert self._server is not None
        self._server.setblocking(False)
        selector.register(self._server, selectors.EVENT_READ, None)
        while not self._stop.is_set():
            if self.frozen.is_set():
                time.sleep(0.05)
                continue
            for key, _ in selector.select(timeout=0.05):
                if key.data is None:
                    client, _ = self._server.accept()
                    upstream = socket.create_connection(self.target)
                    self.connections += 1
                    self._sockets += [client, upstream]
                    selector.register(client, selectors.EVENT_READ, upstream)
                    selector.register(upstream, selectors.EVENT_READ, client)
                    continue
                try:
                    data = key.fileobj.recv(65536)
                except OSError:
                    data = b""
                if data:
                    key.data.sendall(data)
                else:
                    for sock in (key.fileobj, key.data):
                        with contextlib.suppress(KeyError, ValueError):
                            selector.unregister(sock)
                        sock.close()
        selector.close()


Samples = dict[tuple[str, frozenset], float]


def metric_samples(text: str) -> Samples:
    """Prometheus text exposition as ``{(sample name, labels): value}``."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape_port(port: int) -> Samples:
    """What a process serves on ``--metrics-port``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return metric_samples(response.read().decode())


def free_port() -> int:
    """A TCP port nobody listens on right now (for a child process's --metrics-port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
