"""Prometheus metrics of the relay, the consumers and the outbox table (docs/operations.md).

Three kinds, served by the process that knows them:

* the relay's counters (published / failed / parked, publish time of a confirm round) and the
  consumers' (deliveries by outcome, handling time) live in the process's default registry and
  are served by :func:`serve` on ``--metrics-port`` (a thread of ``prometheus_client``);
* the outbox's backlog, its oldest pending age and its parked rows are *read from the database*
  at scrape time by :class:`OutboxTableCollector`: the table is the truth whichever relay runs,
  and a dead relay cannot report its own backlog. The web process serves them on ``/metrics``
  (:func:`metrics_view`) with Django's request metrics.

Hot paths only increment counters: the relay counts once per confirm round and event type (not
per row), a consumer once per delivery.
"""

import logging
import os
from collections import Counter as Tally
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.db import Error as DatabaseError
from django.db import connections
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# Environment defaults of ``--metrics-port`` and the address it binds (docs/operations.md).
PORT_ENV = "OUTBOX_METRICS_PORT"
ADDRESS_ENV = "OUTBOX_METRICS_ADDRESS"
DEFAULT_ADDRESS = "127.0.0.1"
# Set for a web server with several worker processes (gunicorn): see prometheus_client's
# multiprocess mode; /metrics then adds up every process's files.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# A confirm round takes ~1 ms on a healthy local broker, seconds when it is struggling.
PUBLISH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
HANDLING_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

RELAY_PUBLISHED = Counter(
    "outbox_relay_published",
    "Events the broker confirmed (the row is then marked published).",
    ["database", "event_type"],
)
RELAY_FAILED = Counter(
    "outbox_relay_failed",
    "Publish attempts that failed; the row is retried with backoff (or parked).",
    ["database", "event_type"],
)
RELAY_PARKED = Counter(
    "outbox_relay_parked",
    "Rows the relay gave up on (terminal error or OUTBOX_MAX_ATTEMPTS): they need an operator.",
    ["database", "event_type"],
)
RELAY_PUBLISH_SECONDS = Histogram(
    "outbox_relay_publish_seconds",
    "Time from sending a batch of events to the broker's confirm of the last of them.",
    ["database"],
    buckets=PUBLISH_BUCKETS,
)
RELAY_LEASED_PARTITIONS = Gauge(
    "outbox_relay_leased_partitions",
    "Outbox partitions this relay holds (all relays together hold every partition).",
    ["database"],
    multiprocess_mode="livesum",
)

# Outcomes of a delivery (outbox.consumer.dispatcher): handled, duplicate, retried (failed, a
# retry is scheduled), dead_lettered (terminal failure or retries exhausted), requeued (the retry
# or dead-letter copy could not be published: broker trouble).
CONSUMER_EVENTS = Counter(
    "outbox_consumer_events",
    "Deliveries a consumer service dealt with, by outcome.",
    ["service", "event_type", "outcome"],
)
# Deliveries refused because their signature did not verify (they are also dead_lettered above):
# any of them is worth a look, most are a security incident (docs/security.md).
CONSUMER_SIGNATURE_FAILURES = Counter(
    "outbox_consumer_signature_failures",
    "Deliveries dead-lettered because their signature did not verify, by kind of failure.",
    ["service", "kind"],
)
CONSUMER_HANDLING_SECONDS = Histogram(
    "outbox_consumer_handling_seconds",
    "Time to handle one event: the handler and its transaction (inbox row included).",
    ["service", "event_type"],
    buckets=HANDLING_BUCKETS,
)

# Event types of deliveries that are not events at all (unreadable envelope): one label value,
# so garbage on a queue cannot create unbounded label values.
INVALID_TYPE = "invalid"


def count_published(database: str, event_types: Iterable[str]) -> None:
    """Count a committed batch of published events: one increment per event type, not per row."""
    for event_type, number in Tally(event_types).items():
        RELAY_PUBLISHED.labels(database, event_type).inc(number)


def serve(port: int, address: str | None = None) -> None:
    """Serve this process's metrics on ``http://address:port/metrics`` (a daemon thread)."""
    address = address or os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS
    start_http_server(port, addr=address)
    logger.info("metrics on http://%s:%d/metrics", address, port)


def port_from(option: int | str | None) -> int | None:
    """The metrics port from a command-line option, else ``OUTBOX_METRICS_PORT``; None = off."""
    value = option if option not in (None, "") else os.environ.get(PORT_ENV)
    return int(value) if value not in (None, "", "0", 0) else None


# One walk of the relay's queue (outbox_pending: as small as the backlog) for the count and the
# age, one of the parked index for the parked rows: no published row is read, however many are
# retained.
TABLE_SQL = """
SELECT count(*),
       coalesce(extract(epoch FROM statement_timestamp() - min(created_at)), 0),
       (SELECT count(*) FROM outbox_message WHERE parked_at IS NOT NULL)
FROM outbox_pending
"""


class OutboxTableCollector(Collector):
    """Backlog, oldest pending age and parked rows of the outbox table of each database.

    A database that cannot be read is left out of the scrape (and logged): an absent series is
    what ``absent()`` alerts see, a made-up zero would hide the outage.
    """

    def __init__(self, databases: Iterable[str]) -> None:
        self.databases = list(databases)

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not query the database."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Query each database once and yield the three gauges."""
        backlog = GaugeMetricFamily(
            "outbox_backlog_events",
            "Rows waiting to be published (neither published nor parked).",
            labels=["database"],
        )
        oldest = GaugeMetricFamily(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest row waiting to be published (0 when none waits).",
            labels=["database"],
        )
        parked = GaugeMetricFamily(
            "outbox_parked_events",
            "Rows the relay gave up on and that wait for an operator (retry from the admin).",
            labels=["database"],
        )
        for alias in self.databases:
            try:
                with connections[alias].cursor() as cursor:
                    cursor.execute(TABLE_SQL)
                    pending, age, parked_rows = cursor.fetchone()
            except DatabaseError as exc:
                logger.warning("outbox metrics: database %r not readable: %s", alias, exc)
                continue
            backlog.add_metric([alias], pending)
            oldest.add_metric([alias], float(age))
            parked.add_metric([alias], parked_rows)
        yield from (backlog, oldest, parked)


class _Delegate(Collector):
    """Everything another registry has (the process's default one), inside a scrape registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()


def outbox_databases() -> list[str]:
    """``OUTBOX_METRICS_DATABASES``, else every alias with a database of its own.

    Aliases that point at the same database (a service sharing the main one) are reported once,
    under the first alias, so a dashboard never counts one table twice.
    """
    configured = getattr(settings, "OUTBOX_METRICS_DATABASES", None)
    if configured is not None:
        return list(configured)
    seen: dict[tuple, str] = {}
    for alias in connections:
        s = connections[alias].settings_dict
        # A TEST name stands for the database the alias really uses while tests run (aliases
        # sharing the main database share its test database); it is not set in production.
        name = (s.get("TEST") or {}).get("NAME") or s.get("NAME")
        seen.setdefault((s.get("HOST"), s.get("PORT"), name), alias)
    return list(seen.values())


def render(databases: Iterable[str]) -> bytes:
    """The text exposition of this process's metrics plus the outbox table's gauges."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)
    else:
        registry.register(_Delegate(REGISTRY))
    registry.register(OutboxTableCollector(databases))
    return generate_latest(registry)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics`` of the web process: request metrics, this process's counters, the
    outbox table's gauges. No login (Prometheus scrapes it): keep it off the public internet."""
    response = HttpResponse(render(outbox_databases()), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-cache"
    return response
