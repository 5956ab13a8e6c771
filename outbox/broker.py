"""Opening py-amqp connections from a broker URL (shared by the relay, setup_broker and tests)."""

import contextlib

import amqp
from kombu.utils.url import parse_url

# What a lost or refused broker connection looks like from py-amqp: the relay reconnects on these.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    amqp.exceptions.ConnectionError,
    amqp.exceptions.RecoverableConnectionError,
    OSError,  # refused, reset, broken pipe, and socket.timeout (a subclass)
)


# How long a graceful close may wait for the broker (it answers in milliseconds unless blocked).
CLOSE_TIMEOUT = 2.0


class PublishingConnection(amqp.Connection):
    """A py-amqp connection that does not ask for RabbitMQ's ``connection.blocked`` notices.

    With that capability on, py-amqp reads the socket (``drain_events(timeout=0)``, a syscall)
    before *every* publish to catch a notice, which cost a third of the relay's publish time.
    Nobody acts on the notice here anyway (no ``on_blocked``). Under a memory or disk alarm the
    broker stops reading publishing connections either way: the confirms of the round stall,
    ``confirm_timeout`` expires, the relay drops the connection and reconnects with backoff,
    and the unconfirmed rows stay pending (published again later, never lost).
    """

    negotiate_capabilities = {**amqp.Connection.negotiate_capabilities, "connection.blocked": False}


def connect(url: str, *, connect_timeout: float = 5.0) -> amqp.Connection:
    """Open and return a py-amqp connection to ``url`` (``amqp://user:pass@host:port/vhost``).

    Heartbeats stay off: the relay blocks in PostgreSQL while idle and would miss them; a dead
    connection shows up as an error on the next publish, and the relay reconnects then.
    """
    parts = parse_url(url)
    connection = PublishingConnection(
        host=f"{parts.get('hostname') or '127.0.0.1'}:{parts.get('port') or 5672}",
        userid=parts.get("userid") or "guest",
        password=parts.get("password") or "guest",
        virtual_host=parts.get("virtual_host") or "/",
        connect_timeout=connect_timeout,
        heartbeat=0,
        client_properties={"connection_name": "outbox"},
    )
    connection.connect()
    return connection


def close_quietly(connection: amqp.Connection | None, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close a connection gracefully if the broker answers within ``timeout`` seconds, else drop
    it; never raises (used on teardown).

    py-amqp waits for the broker's ``close-ok`` without a timeout, and a broker under a memory
    or disk alarm stops reading the connection: unbounded, the close would hang the process
    (and keep it deaf to SIGTERM). The socket timeout bounds the write of ``close`` and the wait.
    """
    if connection is None:
        return
    # A broken connection may fail to close in many ways; we are dropping it either way.
    try:
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        connection.close()
    except Exception:
        drop(connection)


def drop(connection: amqp.Connection | None) -> None:
    """Abandon a connection without the close handshake: close its socket, forget its channels.

    For a connection given up after an error (no confirm in time, a frame error, a reset):
    waiting for the broker's answer there is pointless, and may last forever.
    """
    if connection is not None:
        with contextlib.suppress(Exception):
            connection.collect()
