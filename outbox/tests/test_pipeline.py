"""The relay's in-memory pipeline: one row per aggregate in flight, no row claimed twice."""

import uuid
from datetime import UTC, datetime

from outbox.claiming import ClaimedRow
from outbox.pipeline import AGGREGATE_CLAIM_STOP, AGGREGATE_HOLD, Pipeline
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


def burst(aggregate: str, n: int) -> list[ClaimedRow]:
    return [row(aggregate, sequence) for sequence in range(1, n + 1)]


def publish_next(pipeline: Pipeline) -> list[tuple[str, int]]:
    """Send what may go, have the broker confirm it and the database record it; what went."""
    rows = pipeline.take_ready()
    pipeline.settle(RoundResult(published=rows))
    pipeline.recorded(*pipeline.take_outcomes())
    return [(r.aggregate_id, r.sequence) for r in rows]


def test_a_burst_of_one_aggregate_takes_a_bounded_share_and_the_rest_stays_pending():
    # Given a claim that brought far more rows of one aggregate than it can send at once
    hot = burst("hot", AGGREGATE_HOLD + 36)
    cold = row("cold", 1)
    pipeline = Pipeline()

    # When the pipeline takes them in
    taken = pipeline.add([*hot, cold])

    # Then it holds the aggregate's first AGGREGATE_HOLD rows and the other aggregate's row;
    # the rest is not held, so the next claims may bring it again (not excluded by id)
    assert taken == [*hot[:AGGREGATE_HOLD], cold]
    assert set(pipeline.held_ids()) == {r.id for r in taken}
    # And the next claims pass over the aggregate's backlog to the others' rows
    assert pipeline.excluded_aggregates() == [("thing", "hot")]
    assert sent(pipeline) == [("hot", 1), ("cold", 1)]


def test_an_aggregate_left_out_of_claims_is_refilled_in_order_once_below_the_stop():
    # Given an aggregate holding its share, its later rows still pending
    hot = burst("hot", 2 * AGGREGATE_HOLD)
    pipeline = Pipeline()
    pipeline.add(hot)
    assert pipeline.refill_places() == 0

    # When its rows go out until it holds AGGREGATE_CLAIM_STOP rows, it is still left out
    for _ in range(AGGREGATE_HOLD - AGGREGATE_CLAIM_STOP):
        publish_next(pipeline)
    assert pipeline.excluded_aggregates() == [("thing", "hot")]
    assert pipeline.refill_places() == 0

    # Then one row less and it is claimed again: as many rows as it can take
    publish_next(pipeline)
    assert pipeline.excluded_aggregates() == []
    places = AGGREGATE_HOLD - (AGGREGATE_CLAIM_STOP - 1)
    assert pipeline.refill_places() == places

    # And a refill claim brings its next rows, after those it holds (a claim excludes these)
    held = set(pipeline.held_ids())
    refill = [r for r in hot if r.id not in held and r.sequence > AGGREGATE_HOLD][:places]
    assert pipeline.add(refill) == refill
    assert pipeline.refill_places() == 0  # left out again
    seen: list[tuple[str, int]] = []
    while len(pipeline):
        went = publish_next(pipeline)
        assert went, "nothing could be sent"
        seen += went
    assert [sequence for _, sequence in seen] == list(
        range(AGGREGATE_HOLD - AGGREGATE_CLAIM_STOP + 2, AGGREGATE_HOLD + places + 1)
    )


def test_a_claim_that_found_nothing_more_ends_the_refill():
    # Given an aggregate that was left out of claims and fell below the stop
    pipeline = Pipeline()
    pipeline.add(burst("hot", AGGREGATE_CLAIM_STOP))
    publish_next(pipeline)
    assert pipeline.refill_places() > 0

    # When a claim comes back short (every due row not left out is in memory)
    pipeline.claimed_all_due()

    # Then there is nothing to refill (its later rows, if any, are announced as new rows are)
    assert pipeline.refill_places() == 0
