"""Migrations 0007/0008 on a database with history: the rows still to publish are queued, the
others are not, and the way back restores the previous release's indexes."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("outbox", "0006_drop_pending_aggregate_index")

INSERT_ROW = """
INSERT INTO outbox_message (
    event_id, source, type, schema_version, aggregate_type, aggregate_id, sequence,
    correlation_id, causation_id, occurred_at, headers, payload, exchange, routing_key,
    partition, attempts, last_error, published_at, parked_at)
VALUES (gen_random_uuid(), 'test', 't', 1, 'order', %s, 1, 'c', '', now(), '{}', '{}', 'x', 't',
        3, %s, '', %s, %s)
RETURNING id
"""


def migrate(target: tuple[str, str] | None) -> None:
    """Migrate the outbox app to ``target``, or to its latest migration (None)."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target or executor.loader.graph.leaf_nodes("outbox")[0]])


def indexes() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'outbox_message'")
        return {row[0] for row in cursor.fetchall()}


def test_upgrade_queues_what_is_still_to_publish_and_downgrade_restores_the_indexes():
    migrate(BEFORE)
    try:
        # given rows of the previous release: pending, retrying, published and parked
        ids = {}
        now = timezone.now()
        with connection.cursor() as cursor:
            for name, attempts, published_at, parked_at in [
                ("pending", 0, None, None),
                ("retrying", 2, None, None),
                ("published", 1, now, None),
                ("parked", 5, None, now),
            ]:
                cursor.execute(INSERT_ROW, [name, attempts, published_at, parked_at])
                ids[name] = cursor.fetchone()[0]
        assert "outbox_pending_id_idx" in indexes()

        # when migrated to this release
        migrate(None)

        # then the pending and retrying rows are queued, with their attempts, and nothing else
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, aggregate_id, attempts, partition FROM outbox_pending")
            queued = {row[1]: row for row in cursor.fetchall()}
            cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'outbox_message'")
            (options,) = cursor.fetchone()
        assert sorted(queued) == ["pending", "retrying"]
        assert queued["retrying"] == (ids["retrying"], "retrying", 2, 3)
        assert "fillfactor=45" in options
        # and the payload is json now, the old rows' documents unchanged
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_typeof(payload)::text, payload::text FROM outbox_message")
            assert set(cursor.fetchall()) == {("json", "{}")}
        assert {"outbox_occurred_idx", "outbox_type_idx", "outbox_correlation_idx"} <= indexes()
        assert not {"outbox_pending_id_idx", "outbox_published_idx"} & indexes()
        # and the trigger queues rows inserted from now on
        with connection.cursor() as cursor:
            cursor.execute(INSERT_ROW, ["new", 0, None, None])
            (new_id,) = cursor.fetchone()
            cursor.execute("SELECT count(*) FROM outbox_pending WHERE id = %s", [new_id])
            assert cursor.fetchone() == (1,)

        # and migrating back restores the previous release's indexes, without the queue
        migrate(BEFORE)
        assert {"outbox_pending_id_idx", "outbox_retrying_idx", "outbox_published_idx"} <= (
            indexes()
        )
        assert not {"outbox_occurred_idx", "outbox_correlation_idx"} & indexes()
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('outbox_pending')")
            assert cursor.fetchone() == (None,)
    finally:
        migrate(None)
