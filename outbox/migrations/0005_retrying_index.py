"""The claim's predecessor check reads an index of the *retrying* rows, not of the whole backlog.

``outbox_retrying_idx`` holds only pending rows that failed an attempt (``attempts > 0``): the
only rows that can be waiting for a retry, normally none. It replaces
``outbox_pending_aggregate_idx``, which every producer INSERT had to maintain.

Built CONCURRENTLY (hence non-atomic): a plain CREATE INDEX would block the producers' inserts
(checkout) while it scans a table of millions of retained rows. The old index is dropped by the
next migration (0006), one operation per non-atomic migration, so a failure of the drop does not
make this one run again. (A failed concurrent build leaves an INVALID index behind: drop it by hand
before running ``migrate`` again — PostgreSQL's rule for CREATE INDEX CONCURRENTLY.) A relay
still running the previous claim in between stays correct (its check then probes the unique
(aggregate_type, aggregate_id, sequence) index).
"""

from django.contrib.postgres.operations import AddIndexConcurrently
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
    ]
