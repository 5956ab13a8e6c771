"""The claim's predecessor check reads an index of the *retrying* rows, not of the whole backlog.

``outbox_retrying_idx`` holds only pending rows that failed an attempt (``attempts > 0``): the
only rows that can be waiting for a retry, normally none. It replaces
``outbox_pending_aggregate_idx``, which every producer INSERT had to maintain.

Both are built and dropped CONCURRENTLY (hence non-atomic): a plain CREATE INDEX would block the
producers' inserts (checkout) while it scans a table of millions of retained rows. The new index
is created before the old one is dropped. A relay still running the previous claim in between
stays correct (its check then probes the unique (aggregate_type, aggregate_id, sequence) index).
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("outbox", "0004_replay_search_and_runs"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="outboxmessage",
            index=models.Index(
                condition=models.Q(
                    ("parked_at__isnull", True),
                    ("published_at__isnull", True),
                    ("attempts__gt", 0),
                ),
                fields=["aggregate_type", "aggregate_id", "sequence"],
                name="outbox_retrying_idx",
            ),
        ),
        RemoveIndexConcurrently(
            model_name="outboxmessage",
            name="outbox_pending_aggregate_idx",
        ),
    ]
