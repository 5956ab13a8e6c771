"""Wiping a service's derived state so that it can be rebuilt from the retained events.

Used by ``manage.py rebuild_projection <service>``: the service's reset hooks
(:meth:`ConsumerService.on_reset`) delete its projection tables, and its inbox rows and
high-water marks go with them, in **one transaction** on the service's database. The replay that
follows is a plain one (no ``--reprocess``): with the inbox empty every retained event is new to
the service again, and an event that arrives live meanwhile is handled once, whichever copy comes
first (the other is a duplicate).
"""

from dataclasses import dataclass

from django.db import connections, transaction

from outbox.consumer.models import AppliedSequence, InboxEntry
from outbox.consumer.service import ConsumerService
from outbox.exceptions import OutboxError

# Blocks inbox inserts (ROW EXCLUSIVE) until the reset commits, and waits for the handler
# transactions in flight: without it a handler committing right after our DELETEs would leave an
# inbox row whose effect we had just wiped, and the replay would skip that event as a duplicate.
# It holds for milliseconds, but it pauses every service's handlers on this database meanwhile.
LOCK_INBOX_SQL = "LOCK TABLE outbox_consumer_inbox IN SHARE ROW EXCLUSIVE MODE"


@dataclass(frozen=True)
class ResetResult:
    """How many inbox rows and per-aggregate marks of the service were deleted."""

    inbox_rows: int
    marks: int


def service_reset(service: ConsumerService) -> ResetResult:
    """Run the service's reset hooks and forget every event it handled, atomically."""
    hooks = service.reset_hooks
    if not hooks:
        raise OutboxError(
            f"service {service.name!r} registered no reset hook (service.on_reset): its state "
            "cannot be rebuilt from events"
        )
    using = service.database
    with transaction.atomic(using=using):
        with connections[using].cursor() as cursor:
            cursor.execute(LOCK_INBOX_SQL)
        for hook in hooks:
            hook(using)
        inbox_rows, _ = InboxEntry.objects.using(using).filter(service=service.name).delete()
        marks, _ = AppliedSequence.objects.using(using).filter(service=service.name).delete()
    return ResetResult(inbox_rows=inbox_rows, marks=marks)


def handled_count(service: ConsumerService, event_ids: list, *, chunk: int = 10_000) -> int:
    """How many of ``event_ids`` the service's inbox holds (i.e. has handled)."""
    entries = InboxEntry.objects.using(service.database).filter(service=service.name)
    return sum(
        entries.filter(event_id__in=event_ids[start : start + chunk]).count()
        for start in range(0, len(event_ids), chunk)
    )
