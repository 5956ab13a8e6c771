"""A database that cannot be read is left out of the scrape, never reported as an empty outbox."""

from collections.abc import Iterator

import pytest
from django.db import connections

from outbox.metrics import OutboxTableCollector


@pytest.fixture
def unreachable_alias(django_db_blocker) -> Iterator[str]:
    """A database alias whose server refuses connections (port 1): a database that is down.

    Outside pytest-django's test databases on purpose: it must really try to connect.
    """
    alias = "metrics-test-down"
    connections.settings[alias] = {
        **connections["default"].settings_dict,
        "PORT": "1",
        "OPTIONS": {"connect_timeout": 2},
    }
    try:
        with django_db_blocker.unblock():
            yield alias
    finally:
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]


def test_an_unreachable_database_has_no_samples(unreachable_alias):
    (backlog, oldest, parked) = OutboxTableCollector([unreachable_alias]).collect()
    assert backlog.samples == oldest.samples == parked.samples == []
