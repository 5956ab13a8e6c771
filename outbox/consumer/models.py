"""The inbox (which events each service has handled) and the per-aggregate high-water marks."""

from django.db import models
from django.db.models.functions import Now


class InboxEntry(models.Model):
    """One event handled by one service, committed in the same transaction as the handler's effect.

    The unique ``(service, event_id)`` is the whole de-duplication: the dispatcher inserts the row
    *before* running the handler, so a concurrent duplicate blocks on the unique index until the
    first transaction ends, then sees the row (and is acknowledged and ignored) or, after a
    rollback, inserts it and handles the event itself.
    """

    service = models.CharField(max_length=100)
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=200)
    source = models.CharField(max_length=200, blank=True, default="")
    subject = models.CharField(max_length=200, blank=True, default="")
    sequence = models.PositiveBigIntegerField(null=True, blank=True)
    correlation_id = models.CharField(max_length=100, blank=True, default="")
    attempts = models.PositiveIntegerField(default=1, help_text="Deliveries it took to handle.")
    received_at = models.DateTimeField(help_text="When the worker took the delivery.")
    handled_at = models.DateTimeField(db_default=Now(), help_text="When the handler finished.")

    class Meta:
        db_table = "outbox_consumer_inbox"
        verbose_name = "inbox entry"
        verbose_name_plural = "inbox entries"
        constraints = [
            models.UniqueConstraint(fields=["service", "event_id"], name="outbox_inbox_uniq"),
        ]
        indexes = [
            models.Index(fields=["service", "handled_at"], name="outbox_inbox_handled_idx"),
            models.Index(fields=["correlation_id"], name="outbox_inbox_correlation_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.service}: {self.event_type} {self.event_id}"


class AppliedSequence(models.Model):
    """The highest ``sequence`` a service has applied per aggregate (a high-water mark).

    A service subscribes to some event types only, so the sequences it sees have gaps: this is
    *not* a gate (the framework never waits for a missing number). It serves two purposes: the
    row lock taken in the handler's transaction serialises handlers of one aggregate across
    workers, and an event older than the mark is detected as *superseded* (logged, counted, and
    visible to handlers through :func:`outbox.consumer.ordering.is_superseded`).
    """

    service = models.CharField(max_length=100)
    source = models.CharField(max_length=200)
    aggregate_type = models.CharField(max_length=100)
    subject = models.CharField(max_length=200)
    last_sequence = models.PositiveBigIntegerField()
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "outbox_consumer_applied_sequence"
        constraints = [
            models.UniqueConstraint(
                fields=["service", "source", "aggregate_type", "subject"],
                name="outbox_applied_sequence_key",
            ),
        ]

    def __str__(self) -> str:
        aggregate = f"{self.source} {self.aggregate_type}:{self.subject}"
        return f"{self.service} <- {aggregate} @ {self.last_sequence}"
