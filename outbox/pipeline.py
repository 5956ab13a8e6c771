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
* **a bounded share per aggregate.** At most ``AGGREGATE_HOLD`` rows of one aggregate are
  held: only one of them can be in flight, the others only wait. Without a bound, a burst of
  one aggregate filled every place in memory (``OUTBOX_MAX_IN_FLIGHT``), went out one row per
  confirm round trip, and no other aggregate was claimed meanwhile. The rows of a batch beyond
  the bound are not taken in: they stay pending, out of the exclusion list, and a later claim
  brings them again, in order (they come after every row of their aggregate held). Aggregates
  with ``AGGREGATE_CLAIM_STOP`` rows or more held are left out of claims altogether
  (``excluded_aggregates``), so claims pass over their backlog to other aggregates' rows; once
  one falls below, the relay refills it with a claim of the places it has (``refill_places``).

Rows of one aggregate wait in sequence order (claims are in id order, and ids grow with
sequence within an aggregate).
"""

from collections import deque

from outbox.claiming import ClaimedRow
from outbox.publisher import Failure, RoundResult

AggregateKey = tuple[str, str]

# Rows of one aggregate held in memory at most. Only one of them can be in flight (order), the
# others wait their turn, a confirm round trip each: more would only take places other
# aggregates could use, fewer would refill it more often (below). With the default
# OUTBOX_MAX_IN_FLIGHT (1,500) and batch (500), fifteen aggregates can hold their full share
# at once and a whole batch still fits for the others.
AGGREGATE_HOLD = 64
# An aggregate with this many rows held is left out of claims until it falls below again; then
# the relay claims its next rows at once (a refill). Half the bound: a refill brings at least
# half of it (not a row or two per claim), and the 31 rows still held cover the claim's few
# milliseconds (a row leaves per confirm round trip, a fraction of a millisecond at best).
AGGREGATE_CLAIM_STOP = AGGREGATE_HOLD // 2


def aggregate_of(row: ClaimedRow) -> AggregateKey:
    """The aggregate a row belongs to: its order is kept within it."""
    return (row.aggregate_type, row.aggregate_id)


class Pipeline:
    """Claimed rows not yet recorded: waiting to be sent, in flight, or settled."""

    def __init__(self) -> None:
        self._held: dict[int, ClaimedRow] = {}
        self._counts: dict[AggregateKey, int] = {}
        # Aggregates with AGGREGATE_CLAIM_STOP rows or more held (left out of claims), and those
        # that fell below it since: they may have pending rows not held, to be refilled.
        self._crowded: set[AggregateKey] = set()
        self._refill: set[AggregateKey] = set()
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

    def excluded_aggregates(self) -> list[AggregateKey]:
        """Aggregates the next claim should leave out: their rows would not be taken in (too
        many held already, or a failure not recorded yet)."""
        return list(self._crowded | self._failing)

    def refill_places(self) -> int:
        """How many rows the aggregates to refill can take: a claim that size brings their next
        rows (0: none to refill). They were left out of claims, so the claims that found
        nothing more to do did not see their backlog."""
        return sum(AGGREGATE_HOLD - self._counts.get(key, 0) for key in self._refill)

    def refilling(self) -> set[AggregateKey]:
        """The aggregates waiting for a refill (see ``refill_places``)."""
        return set(self._refill)

    def claimed_all_due(self) -> None:
        """A claim brought fewer rows than it could: every due row not left out is now in
        memory, the backlog of the aggregates to refill included."""
        self._refill.clear()

    def add(self, rows: list[ClaimedRow]) -> list[ClaimedRow]:
        """Take newly claimed rows (in id order) into memory, waiting to be sent; returns the
        rows taken. Rows already held, of a failing aggregate, or beyond ``AGGREGATE_HOLD``
        rows of their aggregate are left out (still pending: claimed again later)."""
        taken: list[ClaimedRow] = []
        for row in rows:
            key = aggregate_of(row)
            if row.id in self._held or key in self._failing:
                continue
            if self._counts.get(key, 0) >= AGGREGATE_HOLD:
                continue  # and so are its later rows in this batch (in id order)
            self._hold(row, key)
            self._waiting.setdefault(key, deque()).append(row)
            taken.append(row)
        return taken

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
            self._release(row.id)
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
            self._release(row.id)
        for failure in failures:
            key = aggregate_of(failure.message)
            self._release(failure.message.id)
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
            self._release(row.id)

    def _hold(self, row: ClaimedRow, key: AggregateKey) -> None:
        self._held[row.id] = row
        count = self._counts[key] = self._counts.get(key, 0) + 1
        if count == AGGREGATE_CLAIM_STOP:
            self._crowded.add(key)
            self._refill.discard(key)

    def _release(self, row_id: int) -> None:
        row = self._held.pop(row_id, None)
        if row is None:
            return
        key = aggregate_of(row)
        count = self._counts[key] - 1
        if count:
            self._counts[key] = count
        else:
            del self._counts[key]
        if count == AGGREGATE_CLAIM_STOP - 1:
            self._crowded.discard(key)
            self._refill.add(key)
