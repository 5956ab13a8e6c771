"""The relay's in-memory pipeline: one row per aggregate in flight, no row claimed twice."""

import uuid
from datetime import UTC, datetime

from outbox.claiming import ClaimedRow
from outbox.pipeline import Pipeline
from outbox.publisher import Failure, RoundResult

_ids = iter(range(1, 10_000))


def row(aggregate: str, sequence: int) -> ClaimedRow:
    return ClaimedRow(
        id=next(_ids),
        event_id=uuid.uuid4(),
        source="test",
        type="test.thing.happened",
        schema_version=1,
        aggregate_type="thing",
        aggregate_id=aggregate,
        sequence=sequence,
        correlation_id="c",
        causation_id="",
        occurred_at=datetime.now(UTC),
        headers={},
        payload_json="{}",
        exchange="test",
        routing_key="test.thing.happened",
        partition=0,
    )


def sent(pipeline: Pipeline) -> list[tuple[str, int]]:
    return [(r.aggregate_id, r.sequence) for r in pipeline.take_ready()]


def test_the_next_row_of_an_aggregate_leaves_only_after_its_predecessor_was_confirmed():
    pipeline = Pipeline()
    a1, a2, b1 = row("a", 1), row("a", 2), row("b", 1)
    pipeline.add([a1, a2, b1])

    assert sent(pipeline) == [("a", 1), ("b", 1)]
    assert sent(pipeline) == []  # a#2 waits while a#1 is in flight

    # Confirmed (not yet marked): a#2 may go, and a#1 is still excluded from claims
    pipeline.settle(RoundResult(published=[a1]))
    assert sent(pipeline) == [("a", 2)]
    assert set(pipeline.held_ids()) == {a1.id, a2.id, b1.id}

    pipeline.recorded(*pipeline.take_outcomes())
    assert set(pipeline.held_ids()) == {a2.id, b1.id}


def test_a_failed_row_holds_back_its_successors_until_its_failure_is_recorded():
    pipeline = Pipeline()
    a1, a2, a3 = row("a", 1), row("a", 2), row("a", 3)
    pipeline.add([a1, a2, a3])
    assert sent(pipeline) == [("a", 1)]

    pipeline.settle(RoundResult(failed=[Failure(a1, "unroutable")]))

    # Its successors are dropped from memory (the claim holds them back during the backoff),
    # and a claim made before the failure is committed cannot bring them back
    assert sent(pipeline) == []
    assert pipeline.held_ids() == [a1.id]
    pipeline.add([a2, a3])
    assert pipeline.held_ids() == [a1.id]
    assert sent(pipeline) == []

    # Once it is committed, the aggregate is free again (the claim decides what is due)
    pipeline.recorded(*pipeline.take_outcomes())
    assert pipeline.held_ids() == []
    a4 = row("a", 4)
    pipeline.add([a4])
    assert sent(pipeline) == [("a", 4)]


def test_unsettled_rows_and_their_successors_are_released_to_be_claimed_again():
    pipeline = Pipeline()
    a1, a2, b1 = row("a", 1), row("a", 2), row("b", 1)
    pipeline.add([a1, a2, b1])
    sent(pipeline)

    pipeline.settle(RoundResult(unsettled=[a1], published=[b1]))

    assert pipeline.held_ids() == [b1.id]
    pipeline.add([a1, a2])  # claimed again, in order
    assert sent(pipeline) == [("a", 1)]


def test_a_row_already_held_is_not_taken_twice():
    pipeline = Pipeline()
    a1 = row("a", 1)
    pipeline.add([a1])
    pipeline.add([a1])
    assert len(pipeline) == 1
    assert sent(pipeline) == [("a", 1)]
    assert sent(pipeline) == []
