"""Partition leases: a relay settles what it has in flight before it gives a partition up."""

import psycopg
import pytest

from outbox.leases import LOCK_NAMESPACE, PRESENCE_KEY, PartitionLeases

from .helpers import database_url

pytestmark = pytest.mark.django_db(transaction=True)


def test_rows_in_flight_are_settled_before_a_partition_is_released():
    # Given a relay holding all 16 partitions
    leases = PartitionLeases(candidates=list(range(16)), total=16)
    settled: list[int] = []
    assert len(leases.rebalance(before_release=lambda: settled.append(1))) == 16
    assert settled == []  # nothing was released, nothing to settle

    # When a second relay shows up (its presence lock), the first one's share halves
    with psycopg.connect(database_url(), autocommit=True) as other_relay:
        other_relay.execute(
            "SELECT pg_advisory_lock_shared(%s, %s)", [LOCK_NAMESPACE, PRESENCE_KEY]
        )
        held = leases.rebalance(before_release=lambda: settled.append(len(leases.held)))

    # Then it settled once, while it still held every partition, before releasing any
    assert settled == [16]
    assert len(held) == 8
    leases.release_all()
