"""Drop ``outbox_pending_aggregate_idx``, replaced by ``outbox_retrying_idx`` (0005).

CONCURRENTLY (so non-atomic, and alone in its migration): producers keep inserting while it runs.
Django drops it with ``IF EXISTS``, so a database where 0005 already dropped it (0005 did both
steps before they were split) goes through unchanged.
"""

from django.contrib.postgres.operations import RemoveIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("outbox", "0005_retrying_index"),
    ]

    operations = [
        RemoveIndexConcurrently(
            model_name="outboxmessage",
            name="outbox_pending_aggregate_idx",
        ),
    ]
