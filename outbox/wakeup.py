"""Waking the relay on PostgreSQL NOTIFY, with polling as the fallback.

NOTIFY is only a hint: it is sent at commit, never queued for a session that was not listening,
and lost while our listening connection is down. So the relay always polls too (every
``OUTBOX_POLL_INTERVAL`` seconds) and a lost wake-up costs latency, never an event.
"""

import contextlib
import logging
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

    def wait(self, timeout: float, should_stop: Callable[[], bool]) -> bool:
        """Block until a notification arrives or ``timeout`` passes; True if notified."""
        deadline = time.monotonic() + timeout
        self.prime()
        while not should_stop():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._conn is None:
                time.sleep(min(remaining, SLICE_SECONDS))
                continue
            try:
                slice_timeout = min(remaining, SLICE_SECONDS)
                notified = False
                for _ in self._conn.notifies(timeout=slice_timeout, stop_after=1):
                    notified = True
                if notified:
                    # Several commits may have notified; one claim covers them all.
                    for _ in self._conn.notifies(timeout=0):
                        pass
                    return True
            except psycopg.Error as exc:
                logger.warning("LISTEN connection lost, polling meanwhile: %s", exc)
                self.close()
        return False

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
