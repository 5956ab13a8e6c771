"""The recorder commits outcomes in a thread of its own, in order, coalescing under load."""

import pytest
from django.db import connection, transaction

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


def terminate_sessions_that_marked() -> int:
    """End the sessions (other than this test's) whose last statement was a mark, as a
    database restart would; how many."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND query LIKE %s",
            ["%UPDATE outbox_message SET published_at%"],
        )
        return len(cursor.fetchall())


def test_after_a_database_restart_the_first_mark_runs_on_a_new_session(event_type):
    # Given a recorder whose thread has marked a row on its own session
    with transaction.atomic():
        for n in range(2):
            record_event(event_type, aggregate_id=f"o-{n}", payload=make_payload(f"o-{n}"))
    first, second = claim_batch(partitions=range(16), limit=10)
    recorder = Recorder(settings=get_settings())
    try:
        recorder.submit([first], [])
        recorder.wait_all()

        # When the database ends that session, and the relay, reconnecting, abandons its jobs
        assert terminate_sessions_that_marked() == 1
        recorder.abandon()

        # Then the next mark commits (on a new session: the dead one was closed)
        recorder.submit([second], [])
        jobs = recorder.wait_all()
    finally:
        recorder.close()
    assert [[r.id for r in job.published] for job in jobs] == [[second.id]]
    assert OutboxMessage.objects.get(id=second.id).published_at is not None
