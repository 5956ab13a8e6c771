"""Check that PostgreSQL and RabbitMQ answer, and create the shop's database if it is missing.

Run by `make run` and `make test` before anything touches the database, so that a missing service
gives one clear sentence (and the command that starts it) instead of a stack trace.
"""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlparse

import psycopg
from psycopg import sql

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/fitness"
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
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
    """Check both services; with ``--create-db`` also create the database named in DATABASE_URL."""
    ensure_database(
        os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL, create="--create-db" in sys.argv
    )
    check_broker(os.environ.get("CELERY_BROKER_URL") or DEFAULT_BROKER_URL)
    print("preflight: PostgreSQL and RabbitMQ are reachable")


if __name__ == "__main__":
    main()
