"""Waking the relay on PostgreSQL NOTIFY, with polling as the fallback.

NOTIFY is only a hint: it is sent at commit, never queued for a session that was not listening,
and lost while our listening connection is down. So the relay always polls too (every
``OUTBOX_POLL_INTERVAL`` seconds) and a lost wake-up costs latency, never an event.
"""

import contextlib
import logging
import select
import time
from collections.abc import Callable

import psycopg
from django.db import connections

logger = logging.getLogger(__name__)

CHANNEL = "outbox"
# Wait in slices so a SIGTERM is noticed quickly (the signal does not interrupt the wait).
SLICE_SECONDS = 0.25


class Wakeup:
    """A LISTEN session of its own, in autocommit, separate from the relay's working connection."""

    def __init__(self, channel: str = CHANNEL, using: str = "default") -> None:
        self.channel = channel
        self.using = using
        self._conn: psycopg.Connection | None = None

    def prime(self) -> None:
        """Start listening (before the first claim, so no commit falls between claim and wait)."""
        if self._conn is None:
            try:
                self._connect()
            except psycopg.Error as exc:
                logger.warning("LISTEN unavailable, polling only until it recovers: %s", exc)

    def wait(
        self, timeout: float, should_stop: Callable[[], bool], also: list[int] | None = None
    ) -> bool:
        """Block until a notification arrives or ``timeout`` passes; True if notified.

        ``also``: other sockets (the broker's, while confirms are outstanding) that end the
        wait as soon as one is readable, so the relay can wait for "a commit or a confirm",
        whichever comes first. Returns False then.
        """
        others = also or []
        deadline = time.monotonic() + timeout
        self.prime()
        if self._drain():  # notifications that arrived while we were busy
            return True
        while not should_stop():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            listening = self._conn.fileno() if self._conn is not None else None
            sockets = [fd for fd in (listening, *others) if fd is not None]
            slice_timeout = min(remaining, SLICE_SECONDS)
            if not sockets:
                time.sleep(slice_timeout)
                continue
            readable, _, _ = select.select(sockets, [], [], slice_timeout)
            if listening in readable and self._drain():
                return True
            if any(fd in readable for fd in others):
                return False
        return False

    def _drain(self) -> bool:
        """Consume every notification already received; True if there was one.

        Several commits may have notified; one claim covers them all.
        """
        if self._conn is None:
            return False
        notified = False
        try:
            for _ in self._conn.notifies(timeout=0):
                notified = True
        except psycopg.Error as exc:
            logger.warning("LISTEN connection lost, polling meanwhile: %s", exc)
            self.close()
        return notified

    def close(self) -> None:
        """Close the listening connection (it is reopened on the next wait)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _connect(self) -> None:
        params = connections[self.using].get_connection_params()
        # Django's cursor class and adapters are for its own connections; a plain one suffices.
        params.pop("cursor_factory", None)
        params.pop("context", None)
        self._conn = psycopg.connect(**params, autocommit=True)
        self._conn.execute(f'LISTEN "{self.channel}"')
