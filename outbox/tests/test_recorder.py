"""The recorder commits outcomes in a thread of its own, in order, coalescing under load."""

import pytest
from django.db import transaction

from outbox.claiming import claim_batch
from outbox.conf import get_settings
from outbox.models import OutboxMessage
from outbox.publisher import Failure
from outbox.recorder import TEST_PAUSE_ENV, Recorder
from outbox.recording import record_event

from .helpers import make_payload

pytestmark = pytest.mark.django_db(transaction=True)


def test_outcomes_arriving_while_a_job_runs_are_committed_together_in_order(
    event_type, monkeypatch
):
    # Given four claimed rows, and a first job that takes a while (the test pause)
    with transaction.atomic():
        for n in range(4):
            record_event(event_type, aggregate_id=f"o-{n}", payload=make_payload(f"o-{n}"))
    first, second, third, failing = claim_batch(partitions=range(16), limit=10)
    monkeypatch.setenv(TEST_PAUSE_ENV, "0.5")
    recorder = Recorder(settings=get_settings())
    try:
        # When outcomes are submitted while that job runs
        recorder.submit([first], [])
        recorder.submit([second], [])
        recorder.submit([third], [Failure(failing, "nacked by the broker")])
        assert recorder.finished() == []  # nothing committed yet
        jobs = recorder.wait_all()
    finally:
        recorder.close()

    # Then the first job ran alone and the rest was committed together, after it
    assert [[r.id for r in job.published] for job in jobs] == [
        [first.id],
        [second.id, third.id],
    ]
    assert jobs[1].outcomes == [(failing.id, str(failing.event_id), False)]
    states = dict(OutboxMessage.objects.values_list("id", "published_at"))
    assert all(states[r.id] is not None for r in (first, second, third))
    assert OutboxMessage.objects.get(id=failing.id).last_error == "nacked by the broker"
