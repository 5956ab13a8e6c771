"""The relay's work queue, ``outbox_pending``: one row per outbox row still to publish.

With it, no index of ``outbox_message`` needs to mention ``published_at`` or ``attempts`` (0008
rebuilds them without), so marking a row published becomes a heap-only (HOT) update: a new
version of the row on the same page, no index entry. ``fillfactor`` 45 keeps that room free on
every page written from now on (existing pages are not rewritten; their rows are marked the old
way, with index entries, until they are pruned).

Filled by a statement-level trigger on INSERT (whoever inserts: ``record_event``, a bulk load, a
``COPY``), from the rows it inserted that are neither published nor parked. The trigger is created
before the backfill, in this one transaction: ``CREATE TRIGGER`` waits for the producers'
running inserts and blocks new ones until commit (milliseconds), so no row falls between the
two. Stop the relay while this runs (docs/outbox.md, "Upgrading"): a relay of the previous
release marks rows without removing them from this queue.
"""

import django.db.models.functions.datetime
from django.db import migrations, models

# outbox.models.OUTBOX_FILLFACTOR when this migration was written (a migration keeps its value).
FILLFACTOR = 45

CREATE_TRIGGER = """
CREATE OR REPLACE FUNCTION outbox_message_enqueue() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox_pending (
        id, partition, aggregate_type, aggregate_id, sequence, created_at, attempts,
        next_attempt_at)
    SELECT id, partition, aggregate_type, aggregate_id, sequence, created_at, attempts,
           next_attempt_at
    FROM inserted
    WHERE published_at IS NULL AND parked_at IS NULL;
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_message_enqueue
    AFTER INSERT ON outbox_message
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_message_enqueue();
"""

DROP_TRIGGER = """
DROP TRIGGER IF EXISTS outbox_message_enqueue ON outbox_message;
DROP FUNCTION IF EXISTS outbox_message_enqueue();
"""

BACKFILL = """
INSERT INTO outbox_pending (
    id, partition, aggregate_type, aggregate_id, sequence, created_at, attempts, next_attempt_at)
SELECT id, partition, aggregate_type, aggregate_id, sequence, created_at, attempts,
       next_attempt_at
FROM outbox_message
WHERE published_at IS NULL AND parked_at IS NULL
ON CONFLICT (id) DO NOTHING
"""


class Migration(migrations.Migration):
    dependencies = [
        ("outbox", "0006_drop_pending_aggregate_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="OutboxPending",
            fields=[
                (
                    "id",
                    models.BigIntegerField(
                        help_text="outbox_message.id", primary_key=True, serialize=False
                    ),
                ),
                ("partition", models.PositiveSmallIntegerField()),
                ("aggregate_type", models.CharField(max_length=100)),
                ("aggregate_id", models.CharField(max_length=200)),
                ("sequence", models.PositiveBigIntegerField()),
                (
                    "created_at",
                    models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
                ),
                ("attempts", models.PositiveIntegerField(db_default=0, default=0)),
                (
                    "next_attempt_at",
                    models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
                ),
            ],
            options={
                "verbose_name": "pending outbox row",
                "db_table": "outbox_pending",
            },
        ),
        migrations.AddIndex(
            model_name="outboxpending",
            index=models.Index(
                condition=models.Q(("attempts__gt", 0)),
                fields=["aggregate_type", "aggregate_id", "sequence"],
                name="outbox_pending_retrying_idx",
            ),
        ),
        migrations.RunSQL(CREATE_TRIGGER, DROP_TRIGGER),
        migrations.RunSQL(BACKFILL, "DELETE FROM outbox_pending"),
        migrations.RunSQL(
            f"ALTER TABLE outbox_message SET (fillfactor = {FILLFACTOR})",
            "ALTER TABLE outbox_message RESET (fillfactor)",
        ),
    ]
