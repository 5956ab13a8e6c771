"""Rebuild ``outbox_message``'s indexes without ``published_at`` or ``attempts`` in them.

The mark's UPDATE changes only those two columns; once no index (nor an index's WHERE) refers
to them, it is heap-only and writes no index entry. The pending queue (0007) replaces
``outbox_pending_id_idx`` and ``outbox_retrying_idx``; prune walks ``occurred_at`` instead of
``published_at``; the search indexes cover every row instead of published rows only.

CONCURRENTLY (hence non-atomic): producers keep inserting while a table of millions of retained
rows is indexed. Every step can run again: each index is dropped ``IF EXISTS`` before it is
built, so a build that failed half-way (PostgreSQL leaves an INVALID index behind) is redone by
running ``migrate`` again, and the old indexes go only after the new ones exist. Replay and the
admin search with the old indexes until then.
"""

from django.db import migrations, models

NEW_INDEXES = {
    "outbox_occurred_idx": models.Index(fields=["occurred_at"], name="outbox_occurred_idx"),
    "outbox_type_idx": models.Index(fields=["type", "occurred_at"], name="outbox_type_idx"),
    "outbox_correlation_idx": models.Index(
        fields=["correlation_id"], name="outbox_correlation_idx"
    ),
}
NEW_COLUMNS = {
    "outbox_occurred_idx": "occurred_at",
    "outbox_type_idx": "type, occurred_at",
    "outbox_correlation_idx": "correlation_id",
}
PENDING = "published_at IS NULL AND parked_at IS NULL"
PUBLISHED = "published_at IS NOT NULL"
# The indexes dropped, as 0003-0006 built them (for migrating back).
OLD_INDEXES = {
    "outbox_pending_id_idx": f"(id) WHERE {PENDING}",
    "outbox_retrying_idx": f"(aggregate_type, aggregate_id, sequence) WHERE {PENDING} AND attempts > 0",
    "outbox_published_idx": f"(published_at) WHERE {PUBLISHED}",
    "outbox_published_time_idx": f"(occurred_at) WHERE {PUBLISHED}",
    "outbox_published_type_idx": f"(type, occurred_at) WHERE {PUBLISHED}",
    "outbox_published_corr_idx": f"(correlation_id) WHERE {PUBLISHED}",
}


def _build(name: str) -> migrations.RunSQL:
    return migrations.RunSQL(
        [
            f"DROP INDEX CONCURRENTLY IF EXISTS {name}",
            f"CREATE INDEX CONCURRENTLY {name} ON outbox_message ({NEW_COLUMNS[name]})",
        ],
        f"DROP INDEX CONCURRENTLY IF EXISTS {name}",
        state_operations=[migrations.AddIndex(model_name="outboxmessage", index=NEW_INDEXES[name])],
    )


def _drop(name: str) -> migrations.RunSQL:
    return migrations.RunSQL(
        f"DROP INDEX CONCURRENTLY IF EXISTS {name}",
        [
            f"DROP INDEX CONCURRENTLY IF EXISTS {name}",
            f"CREATE INDEX CONCURRENTLY {name} ON outbox_message {OLD_INDEXES[name]}",
        ],
        state_operations=[migrations.RemoveIndex(model_name="outboxmessage", name=name)],
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("outbox", "0007_pending_queue"),
    ]

    operations = [*(_build(name) for name in NEW_INDEXES), *(_drop(name) for name in OLD_INDEXES)]
