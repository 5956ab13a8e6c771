"""Operator actions on the outbox (used by the admin and the management commands)."""

import sys
from collections.abc import Iterable
from datetime import timedelta

from django.db import connection, transaction
from django.db.models.functions import Now
from django.utils import timezone

from outbox.models import OutboxMessage
from outbox.pruning import prune_published
from outbox.queue import requeue
from outbox.wakeup import CHANNEL


def outbox_message_retry(*, message_ids: Iterable[int]) -> int:
    """Un-park parked rows so the relay publishes them right away; returns how many.

    Attempts restart from zero so the row gets the full retry budget again (the cause was
    presumably fixed); ``last_error`` is kept as history. Published rows are never touched.
    """
    with transaction.atomic():
        ids = list(
            OutboxMessage.objects.select_for_update()
            .filter(id__in=list(message_ids), parked_at__isnull=False, published_at__isnull=True)
            .values_list("id", flat=True)
        )
        if not ids:
            return 0
        OutboxMessage.objects.filter(id__in=ids).update(
            parked_at=None, next_attempt_at=Now(), attempts=0
        )
        # UPDATEs do not fire the insert trigger: queue the rows and wake the relay ourselves
        # (the NOTIFY is sent at commit).
        requeue(ids)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])
    return len(ids)


def outbox_prune(*, older_than: timedelta, batch_size: int = 10_000) -> int:
    """Delete published rows published more than ``older_than`` ago; returns how many.

    Deletes in batches of ``batch_size`` (each its own short transaction) so a large backlog of
    retained rows never takes long locks or bloats one transaction. Unpublished rows — pending
    or parked — are never deleted, however old.
    """
    before = timezone.now() - older_than
    pruned = prune_published(
        before=before, using="default", batch_size=batch_size, max_batches=sys.maxsize
    )
    return pruned.rows
