"""The outbox table and the per-aggregate sequence counters.

A row is one CloudEvent waiting to be (or already) published. Rows are self-contained: the relay
needs nothing but the row to build the AMQP message, so it never imports the producers' code.
"""

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from outbox.fields import JSONTextField

# "What is still to publish", in the event's own columns (the admin, replay). The relay never
# reads it from outbox_message: the pending rows are listed in OutboxPending, so no index of
# outbox_message refers to published_at or attempts and marking a row published is a heap-only
# (HOT) update that touches no index (docs/outbox.md, "The pending queue").
PENDING = Q(published_at__isnull=True, parked_at__isnull=True)
# "What was delivered and is retained": what replay and searches read (never the relay).
PUBLISHED = Q(published_at__isnull=False)
# How full an INSERT may make a page of outbox_message, in percent: the rest is room for the rows'
# second versions (published), so the mark's UPDATE stays on the page (heap-only). Not 50: the
# second version is 8 bytes longer (published_at is set) and needs a line pointer of its own, so
# a page filled to half by small rows could not take all of them again (measured: 18 of 20 rows of
# ~570 bytes at 50). The retained log takes about twice the disk of a packed table. Set by
# migration 0007; pages written before it keep the old packing.
OUTBOX_FILLFACTOR = 45


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
    # `json`, not `jsonb`: written once, sent as it is (outbox.fields.JSONTextField).
    payload = JSONTextField(help_text="The event data, sent as the JSON body, as stored.")
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
        # No index refers to published_at or attempts, on purpose: the mark changes only those,
        # so its UPDATE is heap-only (no index entry; 9 us of PostgreSQL CPU per row instead of
        # ~30 with an entry in each of 7 indexes). The search indexes cover every row, pending
        # ones too (a handful next to the retained log), and are written once, at INSERT.
        indexes = [
            # prune_outbox walks old rows by occurred_at (published_at is not indexed, above).
            # Searching the retained log (replay_events, the admin); searches by aggregate use
            # the unique (aggregate_type, aggregate_id, sequence) index above (a bare aggregate
            # id by naming every aggregate type: outbox.selectors). No index on aggregate_id or
            # causation_id alone, on purpose: every index costs each producer's INSERT.
            models.Index(fields=["occurred_at"], name="outbox_occurred_idx"),
            models.Index(fields=["type", "occurred_at"], name="outbox_type_idx"),
            # A btree on purpose, not a (cheaper to insert) hash index: a hash insert walks the
            # whole overflow chain of its value, so a correlation id shared by many rows (any
            # string a producer chooses) would make every insert of it slower, without bound.
            models.Index(fields=["correlation_id"], name="outbox_correlation_idx"),
            # parked_at changes only when a row is parked or retried, never in the mark.
            models.Index(
                fields=["parked_at"], name="outbox_parked_idx", condition=Q(parked_at__isnull=False)
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


class OutboxPending(models.Model):
    """The relay's work queue: one row per outbox row still to publish (neither published nor
    parked), with the columns the claim filters on.

    Written by a trigger on ``outbox_message`` (every INSERT of an unpublished row, whoever makes
    it: ``record_event``, a bulk load, a ``COPY``), deleted by the mark in the same statement that
    stamps ``published_at`` and by parking; "retry now" puts a row back. The claim walks this
    table's primary key, which stays as small as the backlog however many rows are retained.
    ``attempts`` and ``next_attempt_at`` mirror the outbox row's, for the claim's "due" and
    "earlier row retrying" checks. No foreign key on purpose: its check would lock the event row
    (``FOR KEY SHARE``) on every producer INSERT; only outbox code writes this table. The claim
    checks each entry's row and skips one that is gone, published or parked; prune removes such
    entries, ``repair_outbox_queue`` also queues rows missing from it (``outbox.queue``).
    """

    id = models.BigIntegerField(primary_key=True, help_text="outbox_message.id")
    partition = models.PositiveSmallIntegerField()
    aggregate_type = models.CharField(max_length=100)
    aggregate_id = models.CharField(max_length=200)
    sequence = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(db_default=Now())
    attempts = models.PositiveIntegerField(db_default=0, default=0)
    next_attempt_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "outbox_pending"
        verbose_name = "pending outbox row"
        indexes = [
            # The claim's "no earlier row of this aggregate waiting for a retry" check. Only rows
            # that failed an attempt can wait, so it holds the few retrying rows, normally none.
            models.Index(
                fields=["aggregate_type", "aggregate_id", "sequence"],
                name="outbox_pending_retrying_idx",
                condition=Q(attempts__gt=0),
            ),
        ]

    def __str__(self) -> str:
        return f"pending #{self.id} {self.aggregate_type}:{self.aggregate_id}#{self.sequence}"


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
