"""The short fault-injection run (``python -m chaos.run --short``) as part of ``make test``.

One fault of each kind against the shop's real processes, about a minute, then the checker
(chaos/check.py). It runs in a child process on a PostgreSQL cluster and a RabbitMQ node of its
own (chaos/servers.py): restarting them touches nothing else — not this test run's own servers.
"""

import subprocess
import sys

import pytest

from outbox.tests.helpers import BASE_DIR

pytestmark = pytest.mark.chaos


def test_one_fault_of_each_kind_loses_nothing_and_applies_everything_once(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chaos.run",
            "--short",
            "--run-dir",
            str(tmp_path),
        ],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    print(result.stdout)  # the table, shown when the test fails
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-4000:]
    assert "RESULT: PASS" in result.stdout
