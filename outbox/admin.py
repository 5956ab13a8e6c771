"""Read-only admin for the outbox, with a "retry now" action for parked rows."""

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from outbox.models import PENDING, OutboxMessage, OutboxPending, ReplayRun
from outbox.registry import all_event_types
from outbox.selectors import outbox_message_search
from outbox.services import outbox_message_retry

State = OutboxMessage.State


class StateFilter(admin.SimpleListFilter):
    """Pending / published / parked. Pending rows are found through the relay's queue (a table
    as small as the backlog), parked ones through their partial index."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(state.value, state.label) for state in State]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        match self.value():
            case State.PENDING:
                return queryset.filter(PENDING, id__in=OutboxPending.objects.values("id"))
            case State.PUBLISHED:
                return queryset.filter(published_at__isnull=False)
            case State.PARKED:
                return queryset.filter(parked_at__isnull=False, published_at__isnull=True)
        return queryset


class EventTypeFilter(admin.SimpleListFilter):
    """Filter by event type, listing the registered types (no DISTINCT over millions of rows)."""

    title = "event type"
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(t, t) for t in sorted({et.type for et in all_event_types()})]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(type=self.value()) if self.value() else queryset


def _pretty_json(value: object) -> SafeString:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    """Rows are evidence of what happened: nothing here edits or deletes them."""

    list_display = [
        "id",
        "type",
        "schema_version",
        "aggregate",
        "sequence",
        "state_display",
        "attempts",
        "created_at",
        "published_at",
        "short_error",
    ]
    list_filter = [StateFilter, EventTypeFilter]
    # What the search box matches (it shows only when this is set); get_search_results does the
    # matching: exact, case-sensitive and indexed (outbox.selectors.outbox_message_search).
    search_fields = ["event_id", "aggregate_id", "correlation_id"]
    search_help_text = (
        "Exact ids, case-sensitive: an event id, an aggregate id (or type:id, e.g. order:42) or a "
        "correlation id. Several ids separated by spaces: rows matching any of them."
    )
    ordering = ["-id"]
    # Counting millions of retained rows on every page view is what makes outbox admins slow.
    show_full_result_count = False
    actions = ["retry_now"]
    fields = [
        "event_id",
        "type",
        "schema_version",
        "source",
        "aggregate_type",
        "aggregate_id",
        "sequence",
        "correlation_id",
        "causation_id",
        "occurred_at",
        "exchange",
        "routing_key",
        "partition",
        "state_display",
        "created_at",
        "published_at",
        "parked_at",
        "attempts",
        "next_attempt_at",
        "last_error",
        "payload_pretty",
        "headers_pretty",
    ]
    readonly_fields = fields

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Exact id matches through the indexes, instead of Django's ``UPPER(col) = UPPER(term)``
        (``=field``), which no index serves: a sequential scan of the whole retained log."""
        return outbox_message_search(queryset=queryset, text=search_term), False

    @admin.display(description="aggregate")
    def aggregate(self, obj: OutboxMessage) -> str:
        return f"{obj.aggregate_type}:{obj.aggregate_id}"

    @admin.display(description="state")
    def state_display(self, obj: OutboxMessage) -> str:
        return obj.state.label

    @admin.display(description="last error")
    def short_error(self, obj: OutboxMessage) -> str:
        return obj.last_error[:80]

    @admin.display(description="payload")
    def payload_pretty(self, obj: OutboxMessage) -> SafeString:
        return _pretty_json(obj.payload)

    @admin.display(description="headers")
    def headers_pretty(self, obj: OutboxMessage) -> SafeString:
        return _pretty_json(obj.headers)

    @admin.action(description="Retry selected parked messages now")
    def retry_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = outbox_message_retry(message_ids=queryset.values_list("id", flat=True))
        skipped = queryset.count() - count
        self.message_user(request, f"{count} parked message(s) queued for publishing again.")
        if skipped:
            self.message_user(
                request,
                f"{skipped} selected message(s) were not parked: left as they are.",
                messages.WARNING,
            )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: OutboxMessage | None = None) -> bool:
        # Published rows go through prune_outbox; pending ones must never vanish silently.
        return False


@admin.register(ReplayRun)
class ReplayRunAdmin(admin.ModelAdmin):
    """The history of ``replay_events`` runs (read-only: runs are started from the command)."""

    list_display = ("id", "service", "reprocess", "created_at", "finished_at", "sent", "matched")
    list_filter = ("service", "reprocess", ("finished_at", admin.EmptyFieldListFilter))
    search_fields = ("=id", "service")
    readonly_fields = [field.name for field in ReplayRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ReplayRun | None = None) -> bool:
        return False
