"""Not collected by the suite (no ``test_`` prefix): ``test_test_databases.py`` runs it in a
pytest session of its own, to see what that session's teardown leaves behind.

The tests here hold database connections the way the suite's tests do: one per alias in the
test's thread (every service alias shares the test database), and one in a thread that outlives
the test, as a worker thread a test forgot to stop would.
"""

import os
import threading

import psycopg
import pytest
from django.conf import settings
from django.db import connections

forgotten = threading.Event()  # never set: the leaking thread waits until the process exits


@pytest.mark.django_db(databases="__all__")
def test_every_alias_is_queried_from_the_test_thread() -> None:
    for alias in settings.DATABASES:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")


@pytest.mark.django_db(databases="__all__")
def test_a_thread_keeps_its_connection_past_the_test() -> None:
    connected = threading.Event()

    def leak() -> None:
        connections["default"].ensure_connection()
        connected.set()
        forgotten.wait()

    threading.Thread(target=leak, daemon=True, name="leaky-worker").start()
    assert connected.wait(10)


@pytest.mark.skipif(not os.environ.get("PROBE_FOREIGN_SESSION"), reason="asked for by the caller")
def test_someone_else_is_connected_to_the_test_database() -> None:
    """A session of another program (another application name) on the same database: teardown
    must leave it alone, even though that makes the drop fail."""
    settings_dict = connections["default"].settings_dict
    connected = threading.Event()

    def foreign() -> None:
        with psycopg.connect(
            host=settings_dict["HOST"],
            port=settings_dict["PORT"],
            user=settings_dict["USER"],
            dbname=settings_dict["NAME"],
            application_name="someone-else",
        ):
            connected.set()
            forgotten.wait()

    threading.Thread(target=foreign, daemon=True, name="someone-else").start()
    assert connected.wait(10)
