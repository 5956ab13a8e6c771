"""A web process keeps its database connection between requests (``CONN_MAX_AGE``); when the
server drops it (a PostgreSQL restart, a failover, an idle timeout), the next request must get a
fresh connection instead of a 500 (``CONN_HEALTH_CHECKS``).

The requests go through Django's real WSGI handler, the one gunicorn calls: unlike the test
client, it sends ``request_started``, where Django decides whether to keep the connection.
"""

import io
from wsgiref.util import setup_testing_defaults

import psycopg
import pytest
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection

from outbox.tests.helpers import database_url, wait_for

# Autocommit, as in production: inside a test transaction Django would close the connection at
# every request anyway, and the dead one would never be reused.
pytestmark = pytest.mark.django_db(transaction=True)


def _get(handler: WSGIHandler, path: str) -> int:
    """GET ``path`` through the WSGI handler; the status code."""
    environ: dict = {"PATH_INFO": path, "wsgi.input": io.BytesIO(), "wsgi.errors": io.StringIO()}
    setup_testing_defaults(environ)
    statuses: list[str] = []
    body = handler(environ, lambda status, headers, exc_info=None: statuses.append(status))
    b"".join(body)
    body.close()  # sends request_finished, as a WSGI server does
    return int(statuses[0].split()[0])


def _terminate(pid: int) -> None:
    """Kill one server backend from a second connection, as a restart would, and wait for it."""
    with psycopg.connect(database_url(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        wait_for(
            lambda: (
                not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
            ),
            10,
            f"backend {pid} to exit",
        )


def test_every_database_checks_its_connection_before_reusing_it():
    for alias, database in settings.DATABASES.items():
        assert database["CONN_HEALTH_CHECKS"] is True, alias
        assert database["CONN_MAX_AGE"] > 0, alias


def test_a_request_after_the_server_dropped_the_connection_gets_a_new_one():
    # given a web process whose persistent connection served a request
    handler = WSGIHandler()
    assert _get(handler, "/") == 200
    dead_pid = connection.connection.info.backend_pid
    # when PostgreSQL terminates that connection between two requests
    _terminate(dead_pid)
    # then the next request still answers, on a new connection
    assert _get(handler, "/") == 200
    assert connection.connection.info.backend_pid != dead_pid
