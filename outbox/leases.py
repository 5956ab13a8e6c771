"""Partition leases: which relay publishes which partitions, through PostgreSQL advisory locks.

Each relay holds, on its own database session, a shared "presence" lock (so relays can count
each other) and an exclusive lock per partition it leases. Session locks vanish with the
session, so a relay that dies or loses its connection frees its partitions at once, and nothing
needs cleaning up. Relays converge on a fair share, ``ceil(partitions / relays)`` each: a relay
above its share releases partitions between batches (never mid-batch, so order holds), one
below it picks up free ones.

What a relay holds is always read back from ``pg_locks`` rather than remembered, so a silently
re-opened connection (which holds nothing) can never publish a partition it no longer leases.
"""

import math
from collections.abc import Callable

from django.db import connections

# Advisory locks in the two-key form (classid, objid); classid marks them as ours ("ob").
LOCK_NAMESPACE = 0x6F62
PRESENCE_KEY = 2**31 - 1

HELD_LOCKS_SQL = """
SELECT l.objid::bigint, l.pid = pg_backend_pid()
FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


class PartitionLeases:
    """Lease a fair share of ``candidates`` (out of ``total`` partitions) for this relay."""

    def __init__(self, *, candidates: list[int], total: int, using: str = "default") -> None:
        self.using = using
        self.candidates = sorted(candidates)
        self.total = total
        self.held: list[int] = []

    def rebalance(self, before_release: Callable[[], None] | None = None) -> list[int]:
        """Read what we hold, release or acquire partitions towards our fair share, return it.

        ``before_release`` is called once before the first partition is given up: the relay
        settles every row in flight there, so another relay never publishes an aggregate's
        next row while its previous one may still be unconfirmed.
        """
        relays, mine, taken = self._snapshot()
        if PRESENCE_KEY not in mine:
            self._call("pg_advisory_lock_shared", PRESENCE_KEY)
            relays += 1
        held = sorted(mine - {PRESENCE_KEY})
        share = math.ceil(self.total / max(relays, 1))
        if len(held) > share and before_release is not None:
            before_release()
        while len(held) > share:
            self._call("pg_advisory_unlock", held.pop())
        for partition in self.candidates:
            if len(held) >= share:
                break
            if partition in taken or partition in held:
                continue
            if self._call("pg_try_advisory_lock", partition):
                held.append(partition)
        self.held = sorted(held)
        return self.held

    def release_all(self) -> None:
        """Give every partition back (on shutdown; also implied by closing the session)."""
        with connections[self.using].cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock_all()")
        self.held = []

    def _snapshot(self) -> tuple[int, set[int], set[int]]:
        """Return (relays present, keys we hold, partitions other relays hold)."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(HELD_LOCKS_SQL, [LOCK_NAMESPACE])
            rows = cursor.fetchall()
        relays = sum(1 for key, _ in rows if key == PRESENCE_KEY)
        mine = {key for key, is_mine in rows if is_mine}
        taken = {key for key, is_mine in rows if not is_mine and key != PRESENCE_KEY}
        return relays, mine, taken

    def _call(self, function: str, key: int) -> object:
        """Call one of the two-key advisory lock functions (a constant name, never user input)."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(f"SELECT {function}(%s, %s)", [LOCK_NAMESPACE, key])
            return cursor.fetchone()[0]
