"""The outbox table and the per-aggregate sequence counters.

A row is one CloudEvent waiting to be (or already) published. Rows are self-contained: the relay
needs nothing but the row to build the AMQP message, so it never imports the producers' code.
"""

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

# "What is still to publish": the only rows the relay's hot path ever looks at. Partial indexes on
# this predicate stay as small as the backlog, however many published rows are retained.
PENDING = Q(published_at__isnull=True, parked_at__isnull=True)
# "Pending and tried before": the only rows that can be waiting for a retry (a row never
# attempted is always due, see outbox.claiming). Normally none, so its index is nearly empty.
RETRYING = PENDING & Q(attempts__gt=0)
# "What was delivered and is retained": what replay and searches read (never the relay).
PUBLISHED = Q(published_at__isnull=False)


# Correlation and causation ids: any string a producer chooses, up to this length.
MAX_ID_LENGTH = 100


class OutboxMessage(models.Model):
    """One event recorded in the producer's transaction, published later by ``relay_outbox``."""

    class State(models.TextChoices):
        PENDING = "pending", "pending"
        PUBLISHED = "published", "published"
        PARKED = "parked", "parked"

    id = models.BigAutoField(primary_key=True)
    # CloudEvents attributes (the envelope). `event_id` is also the AMQP message_id.
    event_id = models.UUIDField(unique=True)
    source = models.CharField(max_length=200)
    type = models.CharField(max_length=200)
    schema_version = models.PositiveIntegerField(help_text="CloudEvents extension `dataversion`.")
    aggregate_type = models.CharField(max_length=100)
    aggregate_id = models.CharField(max_length=200, help_text="CloudEvents `subject`.")
    sequence = models.PositiveBigIntegerField(help_text="Gap-free, per aggregate.")
    correlation_id = models.CharField(max_length=MAX_ID_LENGTH)
    causation_id = models.CharField(max_length=MAX_ID_LENGTH, blank=True, default="")
    occurred_at = models.DateTimeField(help_text="CloudEvents `time`.")
    headers = models.JSONField(default=dict, blank=True, help_text="Extra AMQP headers.")
    payload = models.JSONField(help_text="The event data, sent as the JSON body.")
    # Routing and relay bookkeeping.
    exchange = models.CharField(max_length=255)
    routing_key = models.CharField(max_length=255)
    partition = models.PositiveSmallIntegerField()
    # Database clock on purpose: the relay compares these with now() in SQL.
    created_at = models.DateTimeField(db_default=Now())
    next_attempt_at = models.DateTimeField(db_default=Now())
    attempts = models.PositiveIntegerField(db_default=0, default=0)
    last_error = models.TextField(blank=True, default="")
    published_at = models.DateTimeField(null=True, blank=True)
    parked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "outbox_message"
        verbose_name = "outbox message"
        constraints = [
            models.UniqueConstraint(
                fields=["aggregate_type", "aggregate_id", "sequence"],
                name="outbox_message_aggregate_sequence_uniq",
            ),
        ]
        indexes = [
            # The relay's claim walks pending rows in id order and stops after one batch.
            models.Index(fields=["id"], name="outbox_pending_id_idx", condition=PENDING),
            # The claim's "no earlier row of this aggregate waiting for a retry" check. Only rows
            # that failed an attempt can wait, so the index holds the few retrying rows, not the
            # whole backlog: a producer's INSERT (attempts = 0) adds no entry to it, the mark's
            # UPDATE none either (published), and the claim's per-row probe finds an almost
            # empty index. (It replaced outbox_pending_aggregate_idx on the whole backlog.)
            models.Index(
                fields=["aggregate_type", "aggregate_id", "sequence"],
                name="outbox_retrying_idx",
                condition=RETRYING,
            ),
            # prune_outbox walks published rows by age.
            models.Index(
                fields=["published_at"],
                name="outbox_published_idx",
                condition=Q(published_at__isnull=False),
            ),
            models.Index(
                fields=["parked_at"], name="outbox_parked_idx", condition=Q(parked_at__isnull=False)
            ),
            # Searching the retained log (replay_events, the admin): published rows only, so a
            # pending row's INSERT never touches them and the claim never sees them. Searches by
            # aggregate use the unique (aggregate_type, aggregate_id, sequence) index above.
            models.Index(
                fields=["occurred_at"], name="outbox_published_time_idx", condition=PUBLISHED
            ),
            models.Index(
                fields=["type", "occurred_at"],
                name="outbox_published_type_idx",
                condition=PUBLISHED,
            ),
            # A btree on purpose, not a (cheaper to insert) hash index: a hash insert walks the
            # whole overflow chain of its value, so a correlation id shared by many rows (any
            # string a producer chooses) would make every mark of it slower, without bound.
            models.Index(
                fields=["correlation_id"],
                name="outbox_published_corr_idx",
                condition=PUBLISHED,
            ),
        ]

    def __str__(self) -> str:
        aggregate = f"{self.aggregate_type}:{self.aggregate_id}"
        return f"{self.type} v{self.schema_version} {aggregate}#{self.sequence}"

    @property
    def state(self) -> "OutboxMessage.State":
        """Where the row is in its life: pending, published or parked."""
        if self.published_at is not None:
            return self.State.PUBLISHED
        if self.parked_at is not None:
            return self.State.PARKED
        return self.State.PENDING


class AggregateSequence(models.Model):
    """The last sequence number handed out per aggregate.

    Updated with ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` inside the caller's
    transaction: the row lock serialises writers of one aggregate until commit, so sequences are
    gap-free (a rollback returns the number) and follow commit order.
    """

    aggregate_type = models.CharField(max_length=100)
    aggregate_id = models.CharField(max_length=200)
    last_sequence = models.PositiveBigIntegerField()

    class Meta:
        db_table = "outbox_aggregate_sequence"
        constraints = [
            models.UniqueConstraint(
                fields=["aggregate_type", "aggregate_id"], name="outbox_aggregate_sequence_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.aggregate_type}:{self.aggregate_id} @ {self.last_sequence}"


class ReplayRun(models.Model):
    """One ``replay_events`` run: what was asked, how far it got, and whether it finished.

    The run id travels with every replayed delivery (header ``x-outbox-replay-run``). For a
    ``--reprocess`` run the consumer deduplicates on ``(service, uuid5(event id, run id))``, so
    resuming an interrupted run (same run id) never applies an event twice, while a *new* run
    applies everything once more. ``cursors`` holds, per database, the id of the last row whose
    whole batch the broker confirmed: a resumed run starts after it (the consumer's inbox drops
    the few deliveries of a batch that was confirmed but not yet recorded here).
    """

    id = models.UUIDField(primary_key=True, help_text="The run id (header x-outbox-replay-run).")
    service = models.CharField(max_length=100)
    # The arguments as given (for matching a re-run to an unfinished run) and as resolved.
    fingerprint = models.CharField(max_length=64, help_text="sha256 of service + filters.")
    filters = models.JSONField(default=dict, help_text="The command's filters as given.")
    since = models.DateTimeField(null=True, blank=True, help_text="occurred_at >= since")
    until = models.DateTimeField(null=True, blank=True, help_text="occurred_at < until")
    snapshot_at = models.DateTimeField(help_text="Only rows published by then are replayed.")
    reprocess = models.BooleanField(default=False)
    databases = models.JSONField(default=list, help_text="Database aliases whose outbox is read.")
    cursors = models.JSONField(default=dict, help_text="Per alias: last row id confirmed.")
    matched = models.PositiveIntegerField(default=0, help_text="Rows matching the filters.")
    skipped = models.PositiveIntegerField(default=0, help_text="Matched, not handled by service.")
    sent = models.PositiveIntegerField(default=0, help_text="Confirmed by the broker, all tries.")
    attempts = models.PositiveIntegerField(default=0, help_text="Invocations (1 + resumes).")
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "outbox_replay_run"
        verbose_name = "replay run"
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["fingerprint"],
                name="outbox_replay_unfinished_idx",
                condition=Q(finished_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        state = "finished" if self.finished_at else "unfinished"
        mode = " reprocess" if self.reprocess else ""
        return f"replay {self.id} -> {self.service}{mode} ({state}, {self.sent} sent)"
