"""A database connection that died while the worker was idle (e.g. a PostgreSQL restart)."""

import psycopg
from django.db import connection

from outbox.consumer.tests.conftest import consumer_db, run_worker
from outbox.consumer.tests.support import event_message, publish
from outbox.tests.helpers import database_url

pytestmark = consumer_db


def _drop_this_process_connection() -> None:
    """What a database restart does to a worker's idle persistent connection."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    with psycopg.connect(database_url(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_connection_dropped_while_idle_is_replaced_and_the_event_applied_in_order(bed):
    # given a worker whose database connection the server closed while it was idle
    _drop_this_process_connection()
    # and two events of one aggregate waiting in its queue, in order
    for sequence in (1, 2):
        message = event_message(bed.placed, subject="o-9", sequence=sequence)
        publish(message, exchange=bed.exchange, routing_key=bed.placed.type)
    # when the worker runs
    stats = run_worker(bed)
    # then the first event is applied at once on a new connection, not sent to a retry queue
    # where the second one would overtake it
    assert stats["retried"] == 0
    assert [event.sequence for event in bed.calls] == [1, 2]
