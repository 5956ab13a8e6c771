"""Check that PostgreSQL and RabbitMQ answer, and create the shop's database if it is missing.

Run by `make run` and `make test` before anything touches the database, so that a missing service
gives one clear sentence (and the command that starts it) instead of a stack trace.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from urllib.parse import unquote, urlparse

import amqp
import psycopg
from psycopg import sql

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/fitness"
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
# The tests use a virtual host of their own, so a running `make run` (same queue names) and the
# test suite never consume each other's events. Must match fitness/settings/test.py.
DEFAULT_TEST_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/fitness_test"
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_RABBITMQ = "rabbitmq-server -detached"


def _fail(message: str) -> None:
    print(f"preflight: {message}", file=sys.stderr)
    sys.exit(1)


def check_broker(url: str) -> None:
    """Open a TCP connection to the broker's AMQP port; fail with the start command if refused."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 5672
    try:
        with socket.create_connection((host, port), timeout=3):
            pass
    except OSError as exc:
        _fail(
            f"RabbitMQ is not reachable at {host}:{port} ({exc}). Start it with: {START_RABBITMQ}"
        )


def _vhost_reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        connection = amqp.Connection(
            host=f"{parsed.hostname or '127.0.0.1'}:{parsed.port or 5672}",
            userid=unquote(parsed.username or "guest"),
            password=unquote(parsed.password or "guest"),
            virtual_host=unquote(parsed.path[1:] or "/"),
            connect_timeout=3,
        )
        connection.connect()
        connection.close()
    except (amqp.exceptions.AccessRefused, amqp.exceptions.NotAllowed):
        return False
    return True


def ensure_test_vhost(url: str) -> None:
    """Create the tests' virtual host with rabbitmqctl (a local broker) when it is missing."""
    if _vhost_reachable(url):
        return
    parsed = urlparse(url)
    vhost, user = unquote(parsed.path[1:]), unquote(parsed.username or "guest")
    if shutil.which("rabbitmqctl") is None:
        _fail(
            f"RabbitMQ has no virtual host {vhost!r} for the tests. Create it: rabbitmqctl "
            f"add_vhost {vhost} && rabbitmqctl set_permissions -p {vhost} {user} '.*' '.*' '.*'"
            " (or point TEST_BROKER_URL at a vhost you may use)."
        )
    for command in (
        ["rabbitmqctl", "-q", "add_vhost", vhost],
        ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
    ):
        subprocess.run(command, check=True, capture_output=True)
    print(f"preflight: created RabbitMQ virtual host {vhost!r} for the tests")


def ensure_database(url: str, *, create: bool) -> None:
    """Connect to the server's maintenance database; create the shop's database when asked."""
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin_url = parsed._replace(path="/postgres").geturl()
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists and create:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"preflight: created database {name!r}")
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0]
        where = f"{parsed.hostname}:{parsed.port or 5432}"
        _fail(f"PostgreSQL is not reachable at {where} ({first_line}). Start: {START_POSTGRES}")


def main() -> None:
    """Check both services; ``--create-db`` creates the database named in DATABASE_URL,
    ``--test-vhost`` the RabbitMQ virtual host of the tests."""
    ensure_database(
        os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL, create="--create-db" in sys.argv
    )
    check_broker(os.environ.get("CELERY_BROKER_URL") or DEFAULT_BROKER_URL)
    if "--test-vhost" in sys.argv:
        ensure_test_vhost(os.environ.get("TEST_BROKER_URL") or DEFAULT_TEST_BROKER_URL)
    print("preflight: PostgreSQL and RabbitMQ are reachable")


if __name__ == "__main__":
    main()
