"""Partition leases: every partition some relay may take is leased, once, fairly, safely."""

from concurrent.futures import Future, ThreadPoolExecutor

import psycopg
import pytest
from django.db import connections

from outbox.leases import LOCK_NAMESPACE, PRESENCE_KEY, PartitionLeases, fair_shares

from .helpers import database_url, partitions_by_relay

pytestmark = pytest.mark.django_db(transaction=True)

ALL = range(16)


class RelaySession:
    """A relay's leases on a database session of its own: one thread, as Django's connections
    are per thread, kept for the relay's life (its locks live as long as the session)."""

    def __init__(self, partitions: range) -> None:
        self.leases = PartitionLeases(candidates=list(partitions), total=16)
        self.releases = 0  # rebalances that gave partitions up (each settles the rows in flight)
        self._thread = ThreadPoolExecutor(max_workers=1)

    def rebalance(self) -> list[int]:
        """Rebalance on the relay's own session, as its loop does every lease interval."""
        return self.rebalance_soon().result(timeout=10)

    def rebalance_soon(self) -> Future[list[int]]:
        """Start a rebalance on the relay's own thread: several relays can rebalance at once."""
        return self._thread.submit(self.leases.rebalance, self._settle)

    def stop(self) -> None:
        self._thread.submit(connections.close_all).result(timeout=10)
        self._thread.shutdown()

    def _settle(self) -> None:
        self.releases += 1


def start_relays(*allowed: range) -> list[RelaySession]:
    """Relays started one after the other, each leasing what it can as it comes up."""
    relays = []
    for partitions in allowed:
        relays.append(RelaySession(partitions))
        relays[-1].rebalance()
    return relays


def rebalance_until_settled(relays: list[RelaySession], rounds: int = 4) -> None:
    """Let every relay rebalance in turn, as each does every OUTBOX_LEASE_INTERVAL, until a
    whole round changes nothing."""
    for _ in range(rounds):
        before = [relay.leases.held for relay in relays]
        if [relay.rebalance() for relay in relays] == before:
            return
    raise AssertionError(f"leases still moving after {rounds} rounds: {before}")


def assert_each_partition_leased_once(relays: list[RelaySession]) -> None:
    """Every partition has exactly one relay, and each relay holds what it believes it does."""
    by_session = partitions_by_relay()
    leased = [p for partitions in by_session.values() for p in partitions]
    assert sorted(leased) == list(ALL)
    believed = [relay.leases.held for relay in relays if relay.leases.held]
    assert sorted(by_session.values()) == sorted(believed)


@pytest.fixture
def relays():
    started: list[RelaySession] = []
    yield started
    for relay in started:
        relay.stop()


def test_rows_in_flight_are_settled_before_a_partition_is_released():
    # Given a relay holding all 16 partitions
    leases = PartitionLeases(candidates=list(range(16)), total=16)
    settled: list[int] = []
    assert len(leases.rebalance(before_release=lambda: settled.append(1))) == 16
    assert settled == []  # nothing was released, nothing to settle

    # When a second relay shows up (a presence lock alone, as a relay of an older release: it
    # counts as allowed every partition), the first one's share halves
    with psycopg.connect(database_url(), autocommit=True) as other_relay:
        other_relay.execute(
            "SELECT pg_advisory_lock_shared(%s, %s)", [LOCK_NAMESPACE, PRESENCE_KEY]
        )
        held = leases.rebalance(before_release=lambda: settled.append(len(leases.held)))

    # Then it settled once, while it still held every partition, before releasing any
    assert settled == [16]
    assert len(held) == 8
    leases.release_all()


@pytest.mark.parametrize("order", [1, -1], ids=["0-3 first", "4-15 first"])
def test_relays_pinned_to_disjoint_partitions_lease_every_partition(relays, order):
    # Given two relays pinned to 0-3 and 4-15 (docs/outbox.md: "give them disjoint --partitions")
    relays += start_relays(*[range(0, 4), range(4, 16)][::order])

    # When they have rebalanced
    rebalance_until_settled(relays)

    # Then each leases all of its own partitions: none is left without a relay
    assert_each_partition_leased_once(relays)
    assert sorted(relay.leases.held for relay in relays) == [list(range(4)), list(range(4, 16))]


@pytest.mark.parametrize("order", [1, -1], ids=["pinned first", "default first"])
def test_a_pinned_relay_and_a_default_one_lease_every_partition(relays, order):
    # Given a relay pinned to 0-3 and one that may take any partition
    pinned, default = start_relays(*[range(0, 4), ALL][::order])[::order]
    relays += [pinned, default]

    # When they have rebalanced
    rebalance_until_settled(relays)

    # Then the pinned one leases its 4 and the other the 12 only it may take
    assert_each_partition_leased_once(relays)
    assert pinned.leases.held == [0, 1, 2, 3]
    assert default.leases.held == list(range(4, 16))
    # And the default one gave 0-3 up (settling first) only if it held them
    assert default.releases == (1 if order == -1 else 0)


@pytest.mark.parametrize("count, spread", [(2, [8, 8]), (3, [4, 6, 6]), (4, [4, 4, 4, 4])])
def test_interchangeable_relays_split_the_partitions_evenly(relays, count, spread):
    # Given relays that may all take any partition, started one after the other
    relays += start_relays(*[ALL] * count)

    # When they have rebalanced
    rebalance_until_settled(relays)

    # Then they split the partitions evenly, each held by one relay
    assert_each_partition_leased_once(relays)
    assert sorted(len(relay.leases.held) for relay in relays) == spread


def test_interchangeable_relays_next_to_a_pinned_one_split_the_rest_evenly(relays):
    # Given a relay pinned to partition 0 and two that may take any
    relays += start_relays(range(0, 1), ALL, ALL)

    # When they have rebalanced
    rebalance_until_settled(relays)

    # Then the two share the 15 others (8 and 7), and every partition has one relay
    assert_each_partition_leased_once(relays)
    assert sorted(len(relay.leases.held) for relay in relays) == [1, 7, 8]


def test_a_stopped_relays_partitions_are_taken_by_the_one_allowed_to(relays):
    # Given a default relay and one pinned to 0-3, settled
    relays += start_relays(ALL, range(0, 4))
    rebalance_until_settled(relays)
    default, pinned = relays

    # When the default relay stops (its session ends, its locks with it)
    relays.remove(default)
    default.stop()
    rebalance_until_settled(relays)

    # Then the pinned one keeps 0-3 and takes nothing else: 4-15 wait for a relay to come
    assert pinned.leases.held == [0, 1, 2, 3]

    # And a relay pinned to 4-15 started then takes all of them
    relays += start_relays(range(4, 16))
    rebalance_until_settled(relays)
    assert_each_partition_leased_once(relays)


def test_two_relays_pinned_to_the_same_partitions_share_them(relays):
    # Given two relays both pinned to 0-7 (say, one per host) and no other relay
    relays += start_relays(range(0, 8), range(0, 8))

    # When they have rebalanced
    rebalance_until_settled(relays)

    # Then they split those 8 between them, each held once
    assert sorted(len(relay.leases.held) for relay in relays) == [4, 4]
    assert sorted(p for relay in relays for p in relay.leases.held) == list(range(8))


def test_relays_rebalancing_at_the_same_time_settle_with_each_partition_leased_once(relays):
    # Given a mix of pinned and default relays
    relays += [RelaySession(p) for p in (range(0, 4), ALL, range(2, 10), ALL, range(12, 16))]

    # When they all rebalance at the same moment, round after round
    for _ in range(6):
        for future in [relay.rebalance_soon() for relay in relays]:
            future.result(timeout=10)

    # Then every partition has one relay, and further rounds give nothing up (no ping-pong)
    assert_each_partition_leased_once(relays)
    releases = [relay.releases for relay in relays]
    for _ in range(3):
        for future in [relay.rebalance_soon() for relay in relays]:
            future.result(timeout=10)
    assert [relay.releases for relay in relays] == releases
    assert_each_partition_leased_once(relays)


def test_fair_shares_fill_relays_to_one_level_capped_by_what_each_may_take():
    assert fair_shares([set(ALL)] * 3) == [6, 6, 6]
    assert fair_shares([set(range(4)), set(ALL)]) == [4, 12]
    assert fair_shares([set(range(4)), set(range(4, 16))]) == [4, 12]
    assert fair_shares([set(range(1)), set(ALL), set(ALL)]) == [1, 8, 8]
    assert fair_shares([set(range(8)), set(range(8))]) == [4, 4]
