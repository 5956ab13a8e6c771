"""Map aggregates to relay partitions, and parse partition lists given on the command line."""

import zlib


def partition_for(aggregate_type: str, aggregate_id: str, partitions: int) -> int:
    """The partition of an aggregate: a stable hash of type and id, modulo ``partitions``.

    CRC-32 rather than ``hash()``: it must give the same answer in every process and release.
    All events of one aggregate share a partition, so the one relay leasing it keeps their order.
    """
    key = f"{aggregate_type}:{aggregate_id}".encode()
    return zlib.crc32(key) % partitions


def parse_partitions(spec: str, partitions: int) -> list[int]:
    """Parse ``"0-3,8,10-11"`` into sorted partition numbers, each checked to be in range."""
    numbers: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if not 0 <= first <= last < partitions:
            raise ValueError(f"partition range {part!r} is outside 0-{partitions - 1}")
        numbers.update(range(first, last + 1))
    if not numbers:
        raise ValueError(f"no partitions in {spec!r}")
    return sorted(numbers)
