"""/metrics behind gunicorn with two worker processes, as in docker-compose.yml.

Each gunicorn worker is a process with its own counters; with ``PROMETHEUS_MULTIPROC_DIR`` set,
/metrics adds up every process's, so a scrape sees every request whichever worker served it.
"""

import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from outbox.tests.helpers import (
    Samples,
    free_port,
    metric_samples,
    wait_for,
)
from outbox.tests.processes import ChildProcess

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 40


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def products_requests(samples: Samples) -> float:
    """GET requests of the product list, whatever name the API gives its view."""
    name = "django_http_requests_total_by_view_transport_method_total"
    return sum(
        value
        for (sample, labels), value in samples.items()
        if sample == name
        and ("method", "GET") in labels
        and "list_products" in dict(labels)["view"]
    )


def answers(url: str) -> bool:
    try:
        get(url)
    except OSError:
        return False
    return True


@pytest.fixture
def gunicorn(tmp_path: Path):
    """gunicorn with 2 workers on the test database, a fresh multiprocess directory."""
    port = free_port()
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    argv = [str(Path(sys.executable).parent / "gunicorn"), "fitness.wsgi:application"]
    argv += ["--bind", f"127.0.0.1:{port}", "--workers", "2"]
    server = ChildProcess.start(
        tmp_path, "gunicorn", argv, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(f"{base}/metrics"), 30, "gunicorn to answer")
        yield base
    finally:
        server.stop()


def test_metrics_add_up_the_requests_of_every_gunicorn_worker(gunicorn):
    # given requests sent 8 at a time, so both workers serve some (a sync worker takes one at a
    # time; sent one by one, they would all go to whichever worker accepts first)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(get, [f"{gunicorn}/api/products"] * REQUESTS))
    # when Prometheus scrapes a few times (each scrape may land on either worker)
    scrapes = [metric_samples(get(f"{gunicorn}/metrics")) for _ in range(4)]
    # then every scrape counts all of them, and reports the outbox table too
    assert [products_requests(samples) for samples in scrapes] == [REQUESTS] * 4
    assert all(
        ("outbox_backlog_events", frozenset({("database", "default")})) in s for s in scrapes
    )
