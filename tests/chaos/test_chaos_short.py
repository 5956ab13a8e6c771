"""The short fault-injection run (``python -m chaos.run --short``) as part of ``make test``.

One fault of each kind against the shop's real processes, about a minute, then the checker
(chaos/check.py). It runs in a child process on a database of its own and on the tests' virtual
host; like ``make chaos`` it restarts the local PostgreSQL and RabbitMQ once each (a few seconds).
"""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connections

from outbox.tests.helpers import BASE_DIR

pytestmark = pytest.mark.chaos


@pytest.fixture
def reconnect_afterwards():
    yield
    # PostgreSQL was restarted under us: drop this process's (now broken) connections.
    connections.close_all()


def test_one_fault_of_each_kind_loses_nothing_and_applies_everything_once(
    tmp_path, reconnect_afterwards
):
    database = f"{os.environ.get('TEST_DATABASE_NAME') or 'test_fitness'}_chaos"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chaos.run",
            "--short",
            "--database",
            database,
            "--broker-url",
            settings.TEST_BROKER_URL,
            "--run-dir",
            str(tmp_path),
        ],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    print(result.stdout)  # the table, shown when the test fails
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-4000:]
    assert "RESULT: PASS" in result.stdout
