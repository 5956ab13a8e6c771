"""Migrations 0007/0008 on a database with history: the rows still to publish are queued, the
others are not, and the way back restores the previous release's indexes."""

import pytest
from django.db import IntegrityError, connection
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


def test_running_0008_again_after_a_failed_concurrent_build_rebuilds_the_invalid_index():
    migrate(("outbox", "0007_pending_queue"))
    try:
        # given a build of outbox_type_idx that failed half-way, as a CREATE INDEX CONCURRENTLY
        # does (here: a unique index over duplicates), leaving an INVALID index of that name
        with connection.cursor() as cursor:
            for name in ("a", "b"):
                cursor.execute(INSERT_ROW, [name, 0, None, None])
            with pytest.raises(IntegrityError):
                cursor.execute(
                    "CREATE UNIQUE INDEX CONCURRENTLY outbox_type_idx ON outbox_message (type)"
                )
        assert index_definitions()["outbox_type_idx"] == (False, True)  # invalid, unique

        # when migrate runs 0008 again
        migrate(None)

        # then every index of 0008 is valid, and outbox_type_idx is the one 0008 defines
        definitions = index_definitions()
        for name in ("outbox_occurred_idx", "outbox_type_idx", "outbox_correlation_idx"):
            assert definitions[name][0], f"{name} is still invalid"
        assert definitions["outbox_type_idx"] == (True, False)
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'outbox_type_idx'")
            assert cursor.fetchone()[0].endswith("(type, occurred_at)")
    finally:
        migrate(None)


def index_definitions() -> dict[str, tuple[bool, bool]]:
    """(valid, unique) of each index of outbox_message, by name."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, i.indisvalid, i.indisunique FROM pg_index AS i
            JOIN pg_class AS c ON c.oid = i.indexrelid
            WHERE i.indrelid = 'outbox_message'::regclass
            """
        )
        return {name: (valid, unique) for name, valid, unique in cursor.fetchall()}
