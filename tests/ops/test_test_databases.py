"""The test session drops its test database at the end, whatever connections its tests left.

Every service alias (payments, shipping...) shares the test database unless it has a URL of its
own, each through a connection of its own; Django's teardown closes only the connection of the
alias that created the database, so ``DROP DATABASE`` used to fail ("being accessed by other
users") and leave the database behind. Runs a pytest session of its own, on a test database of
its own (``teardown_probe.py``), and looks at what is left afterwards.
"""

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from psycopg import sql

from outbox.tests.helpers import BASE_DIR, database_url

# The database only to know the suite's test database name (and to reach its server).
pytestmark = pytest.mark.django_db

PROBE = Path(__file__).with_name("teardown_probe.py")


def _database_exists(name: str) -> bool:
    with psycopg.connect(database_url(), autocommit=True) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return found.fetchone() is not None


def _drop(name: str) -> None:
    with psycopg.connect(database_url(), autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _run_probe(name: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """The probe's pytest session on test database ``name``."""
    # Without the service database URLs a developer may have set: an alias with a URL of its
    # own takes "test_<its database>", which would be this suite's own test database.
    environment = {
        **{k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")},
        "TEST_DATABASE_NAME": name,
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(PROBE), "-q", "-p", "no:cacheprovider"],
        cwd=BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_test_database_is_dropped_whatever_connections_the_tests_left() -> None:
    # given a session on a test database of its own, whose tests leave connections open
    name = f"{connection.settings_dict['NAME']}_teardown"
    try:
        # when it ends
        finished = _run_probe(name)
        output = finished.stdout + finished.stderr
        # then its database is gone, dropped without an error
        assert finished.returncode == 0, output
        assert "being accessed by other users" not in output
        assert not _database_exists(name), output
        # and the connection of the forgotten thread was named: a leak to fix in its test
        assert "1 session(s) still connected" in output
    finally:
        _drop(name)


def test_teardown_never_ends_a_session_of_another_program() -> None:
    # given a session of another program on the probe's test database (another test run's, say)
    name = f"{connection.settings_dict['NAME']}_teardown_foreign"
    try:
        # when the probe's session ends
        finished = _run_probe(name, PROBE_FOREIGN_SESSION="1")
        output = finished.stdout + finished.stderr
        # then only the probe's own leaked session was terminated; the other one was left alone,
        # so the drop failed (pytest-django's warning) rather than cut somebody else off
        terminated = output.split("session(s) still connected")
        assert len(terminated) == 2, output
        assert "fitness-tests-" in terminated[1], output
        assert "someone-else" not in terminated[1], output
        assert "being accessed by other users" in output, output
        assert _database_exists(name), output
    finally:
        _drop(name)
