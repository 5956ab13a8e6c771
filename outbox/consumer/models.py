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


class DeadLetter(models.Model):
    """A message taken out of ``<service>.dead`` so an operator can see it, requeue or discard it.

    ``collect_dead_letters`` moves messages from the broker into this table (insert, commit, then
    ack: a crash in between redelivers the message, and the unique constraints turn the second
    copy into a no-op). Two keys make that idempotent without hiding a *second* death:

    * ``fingerprint`` (a hash of the message as it lay in the queue: body, properties, headers
      with ``x-dead-at``/``x-death``) — the same copy collected twice is one row;
    * at most one **open** row per ``(service, event_id)`` — two copies of one failure (a
      producer's duplicate, a worker crash between the dead copy's confirm and the ack) are one
      thing to fix. Once that row is requeued or discarded, the event dying again makes a new row.

    Stored in the default database (an operator's table, next to the admin), whatever database
    the service's own tables use.
    """

    class State(models.TextChoices):
        OPEN = "open", "open"
        REQUEUED = "requeued", "requeued"
        DISCARDED = "discarded", "discarded"

    class Origin(models.TextChoices):
        CONSUMER = "consumer", "consumer (handler failed)"
        BROKER = "broker", "broker (x-death)"

    service = models.CharField(max_length=100)
    event_id = models.UUIDField(null=True, blank=True, help_text="None when it was unreadable.")
    event_type = models.CharField(max_length=200, blank=True, default="")
    version = models.PositiveIntegerField(null=True, blank=True)
    source = models.CharField(max_length=200, blank=True, default="")
    subject = models.CharField(max_length=200, blank=True, default="")
    correlation_id = models.CharField(max_length=100, blank=True, default="")
    occurred_at = models.DateTimeField(null=True, blank=True, help_text="The event's ce-time.")
    origin = models.CharField(max_length=20, choices=Origin.choices)
    reason = models.TextField()
    attempts = models.PositiveIntegerField(help_text="Deliveries before it was dead-lettered.")
    headers = models.JSONField(default=dict, help_text="AMQP application headers, as received.")
    properties = models.JSONField(default=dict, help_text="Other AMQP properties.")
    body = models.BinaryField()
    payload = models.JSONField(null=True, blank=True, help_text="The body as JSON, if it is.")
    fingerprint = models.CharField(max_length=64)
    dead_at = models.DateTimeField(help_text="When it was dead-lettered.")
    collected_at = models.DateTimeField(db_default=Now())
    state = models.CharField(max_length=20, choices=State.choices, default=State.OPEN)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True, default="")
    resolution_note = models.TextField(blank=True, default="")

    class Meta:
        db_table = "outbox_consumer_dead_letter"
        verbose_name = "dead letter"
        verbose_name_plural = "dead letters"
        constraints = [
            models.UniqueConstraint(
                fields=["service", "fingerprint"], name="outbox_dead_letter_copy_uniq"
            ),
            models.UniqueConstraint(
                fields=["service", "event_id"],
                condition=models.Q(state="open", event_id__isnull=False),
                name="outbox_dead_letter_open_uniq",
            ),
        ]
        indexes = [
            models.Index(fields=["service", "state", "dead_at"], name="outbox_dead_svc_idx"),
            models.Index(
                fields=["resolved_at"],
                condition=~models.Q(state="open"),
                name="outbox_dead_resolved_idx",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.service}: {self.event_type or '?'} {self.event_id or '(no id)'} [{self.state}]"
        )
