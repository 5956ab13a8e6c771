"""The rows a relay holds in memory, from their claim until the database records their outcome.

The relay keeps claiming and sending while earlier rows' confirms are outstanding, so it holds
rows in several states at once. This class is the bookkeeping that keeps that safe:

* **one row per aggregate in flight.** A row is sent only when no earlier row of its aggregate
  is waiting for its confirm. If that earlier row then fails (nack, unroutable) its successors
  have not left yet, and they are dropped from memory: the claim holds them back while the
  failed row waits for its retry, exactly as before. A row that was confirmed lets the next one
  go at once, before it is even marked (the broker has it; a crash only republishes both, in
  order).
* **no row twice.** Every row in memory (waiting, in flight, confirmed but not yet marked,
  failed but not yet recorded) is excluded from the next claim by id, because it is still
  pending in the table until its outcome is committed.
* **no successor of a failure before the failure is committed.** Outcomes are committed in a
  worker thread (``recorder``) while the relay goes on claiming, so a claim can still see a
  failed row as due and bring its successors: rows of an aggregate whose failure is not
  recorded yet are not taken in. Once it is, the claim holds them back by itself.

Rows of one aggregate wait in sequence order (claims are in id order, and ids grow with
sequence within an aggregate).
"""

from collections import deque

from outbox.claiming import ClaimedRow
from outbox.publisher import Failure, RoundResult

AggregateKey = tuple[str, str]


def aggregate_of(row: ClaimedRow) -> AggregateKey:
    """The aggregate a row belongs to: its order is kept within it."""
    return (row.aggregate_type, row.aggregate_id)


class Pipeline:
    """Claimed rows not yet recorded: waiting to be sent, in flight, or settled."""

    def __init__(self) -> None:
        self._held: dict[int, ClaimedRow] = {}
        self._waiting: dict[AggregateKey, deque[ClaimedRow]] = {}
        # Aggregates with a row in flight, or with a failure not recorded yet: nothing of
        # theirs may be sent until that is settled.
        self._busy: set[AggregateKey] = set()
        self._failing: set[AggregateKey] = set()
        self.acked: list[ClaimedRow] = []
        self.failed: list[Failure] = []

    def __len__(self) -> int:
        return len(self._held)

    def held_ids(self) -> list[int]:
        """Ids of every row in memory: the next claim must not bring them again."""
        return list(self._held)

    def add(self, rows: list[ClaimedRow]) -> None:
        """Take newly claimed rows (in id order) into memory, waiting to be sent."""
        for row in rows:
            if row.id in self._held or aggregate_of(row) in self._failing:
                continue
            self._held[row.id] = row
            self._waiting.setdefault(aggregate_of(row), deque()).append(row)

    def has_ready(self) -> bool:
        """Whether some waiting row could be sent right now."""
        return any(key not in self._busy for key in self._waiting)

    def take_ready(self) -> list[ClaimedRow]:
        """The rows that may be sent now, in id order: the next one of each idle aggregate."""
        ready: list[ClaimedRow] = []
        for key in [k for k in self._waiting if k not in self._busy]:
            rows = self._waiting[key]
            ready.append(rows.popleft())
            self._busy.add(key)
            if not rows:
                del self._waiting[key]
        ready.sort(key=lambda row: row.id)
        return ready

    def settle(self, result: RoundResult) -> None:
        """Take in what the broker said about rows in flight (see ``publisher``)."""
        for row in result.published:
            self.acked.append(row)
            self._busy.discard(aggregate_of(row))
        for failure in result.failed:
            # The aggregate stays busy until the failure (and its backoff) is recorded.
            key = aggregate_of(failure.message)
            self.failed.append(failure)
            self._failing.add(key)
            self._drop_waiting(key)
        for row in result.unsettled:
            # Unknown outcome: still pending and due, claimed again (with its successors).
            key = aggregate_of(row)
            self._held.pop(row.id, None)
            self._drop_waiting(key)
            self._busy.discard(key)

    def take_outcomes(self) -> tuple[list[ClaimedRow], list[Failure]]:
        """The confirmed and failed rows settled since the last call, to be recorded."""
        outcomes = (self.acked, self.failed)
        self.acked, self.failed = [], []
        return outcomes

    def recorded(self, published: list[ClaimedRow], failures: list[Failure]) -> None:
        """These outcomes are committed: forget those rows."""
        for row in published:
            self._held.pop(row.id, None)
        for failure in failures:
            key = aggregate_of(failure.message)
            self._held.pop(failure.message.id, None)
            self._busy.discard(key)
            self._failing.discard(key)

    def drop_waiting(self) -> None:
        """Forget every row not sent yet (they are claimed again later)."""
        for key in list(self._waiting):
            self._drop_waiting(key)

    def clear(self) -> None:
        """Forget everything (after a lost connection: what was in flight is published again)."""
        self.__init__()

    def _drop_waiting(self, key: AggregateKey) -> None:
        for row in self._waiting.pop(key, ()):
            self._held.pop(row.id, None)
