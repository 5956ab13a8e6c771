"""Partition leases: which relay publishes which partitions, through PostgreSQL advisory locks.

Each relay holds, on its own database session, a shared "presence" lock (so relays can count
each other), a shared "allowed" lock per partition it may take (its ``--partitions``, so relays
know what each other may take), and an exclusive lock per partition it leases. Session locks
vanish with the session, so a relay that dies or loses its connection frees its partitions at
once, and nothing needs cleaning up.

Every relay reads the same picture from ``pg_locks`` and applies three rules:

- **Share.** Relays are filled to one level, each capped by how many partitions it may take:
  the smallest level ``L`` with ``sum(min(allowed, L)) >= partitions anyone may take``. For
  interchangeable relays that is ``ceil(partitions / relays)``; next to a relay pinned to 4 of
  16 partitions a default one gets 12.
- **Take.** A free partition of its allowed set is taken by a relay below its share, and by any
  relay when no *other* relay allowed to take it is below its share (so a partition only one
  relay may take is never left waiting on the fair spread).
- **Give back.** A relay above its share releases a partition only to someone: one that another
  relay below its share is allowed to take (between batches, never mid-batch, so order holds).

Why every partition that some relay may take ends up leased (relays stable, each rebalancing
every ``OUTBOX_LEASE_INTERVAL``): ``sum(min(held, share))`` over relays never decreases (a relay
only gives back above its share, down to it) and is bounded. A release is followed by the wanting
relay taking a partition, or by it reaching its share otherwise: either raises that sum, so
releases stop. From then on partitions are only taken, and a free one is taken at the next turn
of a relay allowed to take it: the relay below its share fills it (or fills up otherwise, raising
the sum again), or, with none below their share, whoever sees it first. Two relays never hold one
partition (the lock is exclusive), and a relay settles its rows in flight before giving any up.

What a relay holds is always read back from ``pg_locks`` rather than remembered, so a silently
re-opened connection (which holds nothing) can never publish a partition it no longer leases.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connections

# Advisory locks in the two-key form (classid, objid); classid marks them as ours ("ob"), and
# the shared "may take this partition" locks ("oc") apart from the leases.
LOCK_NAMESPACE = 0x6F62
ALLOWED_NAMESPACE = 0x6F63
PRESENCE_KEY = 2**31 - 1

LOCKS_SQL = """
SELECT l.pid, l.pid = pg_backend_pid(), l.classid::int, l.objid::bigint
FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.granted AND l.classid IN (%s, %s) AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


@dataclass
class RelaySession:
    """What one relay's session shows in ``pg_locks``: presence, allowed set, leases."""

    present: bool = False
    # Empty for a relay of an older release, which announces nothing: it may take any partition.
    allowed: set[int] = field(default_factory=set)
    held: set[int] = field(default_factory=set)


def fair_shares(allowed_sets: list[set[int]]) -> list[int]:
    """Each relay's share: one level for all, capped by how many partitions each may take."""
    anyone = len(set().union(*allowed_sets))
    level = 0
    while sum(min(len(allowed), level) for allowed in allowed_sets) < anyone:
        level += 1
    return [min(len(allowed), level) for allowed in allowed_sets]


class PartitionLeases:
    """Lease a fair share of ``candidates`` (out of ``total`` partitions) for this relay."""

    def __init__(self, *, candidates: list[int], total: int, using: str = "default") -> None:
        self.using = using
        self.candidates = sorted(candidates)
        self.total = total
        self.held: list[int] = []

    def rebalance(self, before_release: Callable[[], None] | None = None) -> list[int]:
        """Read what every relay holds, release or acquire partitions by the rules above.

        ``before_release`` is called once before the first partition is given up: the relay
        settles every row in flight there, so another relay never publishes an aggregate's
        next row while its previous one may still be unconfirmed.
        """
        me, others = self._snapshot()
        if not me.present:
            self._announce()
        share, wanted = self._share_and_wanted(others)
        held = sorted(me.held)
        # Only what a relay below its share may take is given back: a partition nobody wants
        # would just be taken again, at the cost of a settle every time.
        surplus = [p for p in reversed(held) if p in wanted][: max(len(held) - share, 0)]
        if surplus and before_release is not None:
            before_release()
        for partition in surplus:
            self._call("pg_advisory_unlock", partition)
            held.remove(partition)
        taken = set().union(*(session.held for session in others.values()))
        for partition in self.candidates:
            if partition in taken or partition in held:
                continue
            # Beyond our share, only a partition no relay below its share may take.
            if len(held) >= share and partition in wanted:
                continue
            if self._call("pg_try_advisory_lock", partition):
                held.append(partition)
        self.held = sorted(held)
        return self.held

    def _share_and_wanted(self, others: dict[int, RelaySession]) -> tuple[int, set[int]]:
        """Our share, and every partition another relay below its own share may take."""
        peers = [session for session in others.values() if session.present]
        allowed = [session.allowed or set(range(self.total)) for session in peers]
        share, *peer_shares = fair_shares([set(self.candidates), *allowed])
        wanted: set[int] = set()
        for session, may_take, peer_share in zip(peers, allowed, peer_shares, strict=True):
            if len(session.held) < peer_share:
                wanted |= may_take
        return share, wanted

    def release_all(self) -> None:
        """Give every partition back (on shutdown; also implied by closing the session)."""
        with connections[self.using].cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock_all()")
        self.held = []

    def _snapshot(self) -> tuple[RelaySession, dict[int, RelaySession]]:
        """Return our session and every other one holding any of our locks, by backend pid."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(LOCKS_SQL, [LOCK_NAMESPACE, ALLOWED_NAMESPACE])
            rows = cursor.fetchall()
        me, others = RelaySession(), {}
        for pid, is_mine, namespace, key in rows:
            session = me if is_mine else others.setdefault(pid, RelaySession())
            if namespace == ALLOWED_NAMESPACE:
                session.allowed.add(key)
            elif key == PRESENCE_KEY:
                session.present = True
            else:
                session.held.add(key)
        return me, others

    def _announce(self) -> None:
        """Say which partitions we may take, then that we are here (others count us from then)."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_lock_shared(%s, p) FROM unnest(%s::int[]) AS p",
                [ALLOWED_NAMESPACE, self.candidates],
            )
        self._call("pg_advisory_lock_shared", PRESENCE_KEY)

    def _call(self, function: str, key: int) -> object:
        """Call one of the two-key advisory lock functions (a constant name, never user input)."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(f"SELECT {function}(%s, %s)", [LOCK_NAMESPACE, key])
            return cursor.fetchone()[0]
