"""Operator actions on the outbox (used by the admin and the management commands)."""

from collections.abc import Iterable
from datetime import timedelta

from django.db import connection, transaction
from django.db.models.functions import Now
from django.utils import timezone

from outbox.models import OutboxMessage
from outbox.wakeup import CHANNEL


def outbox_message_retry(*, message_ids: Iterable[int]) -> int:
    """Un-park parked rows so the relay publishes them right away; returns how many.

    Attempts restart from zero so the row gets the full retry budget again (the cause was
    presumably fixed); ``last_error`` is kept as history. Published rows are never touched.
    """
    with transaction.atomic():
        count = OutboxMessage.objects.filter(
            id__in=list(message_ids), parked_at__isnull=False, published_at__isnull=True
        ).update(parked_at=None, next_attempt_at=Now(), attempts=0)
        if count:
            # UPDATEs do not fire the insert trigger; wake the relay ourselves (sent at commit).
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])
    return count


def outbox_prune(*, older_than: timedelta, batch_size: int = 10_000) -> int:
    """Delete published rows published more than ``older_than`` ago; returns how many.

    Deletes in batches of ``batch_size`` (each its own short transaction) so a large backlog of
    retained rows never takes long locks or bloats one transaction. Unpublished rows — pending
    or parked — are never deleted, however old.
    """
    cutoff = timezone.now() - older_than
    total = 0
    while True:
        ids = list(
            OutboxMessage.objects.filter(
                published_at__lt=cutoff, published_at__isnull=False, parked_at__isnull=True
            )
            .order_by("published_at")
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return total
        deleted, _ = OutboxMessage.objects.filter(id__in=ids, published_at__isnull=False).delete()
        total += deleted
