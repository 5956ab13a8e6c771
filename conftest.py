"""Fixtures shared by every test package."""

import os
from collections.abc import Iterator

import psycopg
import pytest
from django.conf import settings
from django.db import connections
from pytest_django import DjangoDbBlocker

from tests.factories import make_customer, make_product

# Every connection of this test run carries this application name: its threads' (libpq reads
# PGAPPNAME when a connection names none, and Django names none) and its child processes' (they
# inherit the environment). Teardown ends only sessions of this run, never another run's that
# happens to use a test database of the same name on the same server.
RUN_APPLICATION_NAME = f"fitness-tests-{os.getpid()}"
os.environ["PGAPPNAME"] = RUN_APPLICATION_NAME

# The database names as configured, before the test runner renames the aliases it sets up to
# their test database: an alias whose name changed is on a test database of this session.
_CONFIGURED_NAMES = {alias: database["NAME"] for alias, database in settings.DATABASES.items()}


def _test_databases() -> dict[str, dict]:
    """This session's test databases: ``{name: settings of one alias on it}``."""
    databases: dict[str, dict] = {}
    for alias in connections:
        settings_dict = connections[alias].settings_dict
        if settings_dict["NAME"] != _CONFIGURED_NAMES.get(alias):
            databases.setdefault(settings_dict["NAME"], settings_dict)
    return databases


def _end_other_sessions(name: str, settings_dict: dict) -> list[tuple]:
    """Terminate this run's sessions still connected to the test database ``name``; what they
    were.

    Called once this process closed its own connections: what is left of this run (by its
    application name) was opened by a thread or a child process that a test did not stop, and
    would make ``DROP DATABASE`` fail. Sessions of anybody else are left alone.
    """
    with psycopg.connect(
        host=settings_dict["HOST"] or "127.0.0.1",
        port=settings_dict["PORT"] or 5432,
        user=settings_dict["USER"],
        password=settings_dict["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    ) as admin:
        sessions = admin.execute(
            "SELECT pid, application_name, state, left(query, 120) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = %s AND pid <> pg_backend_pid()",
            [name, RUN_APPLICATION_NAME],
        ).fetchall()
        for pid, *_ in sessions:
            # With a timeout, pg_terminate_backend waits until the backend has exited.
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
    return sessions


@pytest.fixture(scope="session")
def django_db_setup(
    django_db_setup: None,
    django_db_blocker: DjangoDbBlocker,
    django_db_keepdb: bool,
    request: pytest.FixtureRequest,
) -> Iterator[None]:
    """pytest-django's test databases, and every connection to them closed before they are
    dropped.

    The service aliases share the test database (unless they have a URL of their own), each
    through a connection of its own, and Django's teardown closes only the connection of the
    alias that created the database: the others made ``DROP DATABASE`` fail ("being accessed by
    other users") and left the database behind. Sessions of threads or child processes that
    outlived their test are terminated too, and named in a warning.
    """
    yield
    with django_db_blocker.unblock():
        databases = _test_databases()
        connections.close_all()
        if django_db_keepdb:
            return
        for name, settings_dict in databases.items():
            if sessions := _end_other_sessions(name, settings_dict):
                request.node.warn(
                    pytest.PytestWarning(
                        f"{len(sessions)} session(s) still connected to {name} at the end of "
                        f"the tests (a thread or a child process not stopped?), terminated: "
                        f"{sessions}"
                    )
                )


@pytest.fixture
def customer(db):
    """A registered customer."""
    return make_customer()


@pytest.fixture
def other_customer(db):
    """A second customer, to prove one never sees the other's data."""
    return make_customer()


@pytest.fixture
def product(db):
    """A product priced 10.00 with 10 in stock."""
    return make_product()
