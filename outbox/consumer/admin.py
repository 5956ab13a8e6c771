"""Dead letters in the admin: per service, with the event, the reason and the attempts.

Rows are collected from ``<service>.dead`` every minute (Celery beat) or with the "Collect now"
button; the actions requeue them after a fix or discard them with a reason (who and when are
recorded). Nothing here edits or deletes a row: resolved rows are pruned by ``prune_events``.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from outbox.consumer.dead_letters import ResolveResult, collect_services, discard, requeue
from outbox.consumer.models import DeadLetter
from outbox.consumer.service import all_services

State = DeadLetter.State


class ServiceFilter(admin.SimpleListFilter):
    """The declared services plus any other service that has dead letters."""

    title = "service"
    parameter_name = "service"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        names = {service.name for service in all_services()}
        names.update(DeadLetter.objects.values_list("service", flat=True).distinct())
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(service=self.value()) if self.value() else queryset


class DiscardForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Recorded with your user name and the time. The events will not be processed.",
    )


def _pretty_json(value: object) -> SafeString:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "dead_at",
        "service",
        "event_type",
        "event_id",
        "subject",
        "attempts",
        "short_reason",
        "origin",
        "state",
    ]
    list_filter = ["state", ServiceFilter, "origin", "event_type"]
    search_fields = ["=subject", "=correlation_id", "event_id"]
    ordering = ["-dead_at", "-id"]
    date_hierarchy = "dead_at"
    actions = ["requeue_selected", "discard_selected"]
    fields = [
        "service",
        "state",
        "event_id",
        "event_type",
        "version",
        "source",
        "subject",
        "correlation_id",
        "occurred_at",
        "origin",
        "reason",
        "attempts",
        "dead_at",
        "collected_at",
        "resolved_at",
        "resolved_by",
        "resolution_note",
        "payload_pretty",
        "body_text",
        "headers_pretty",
        "properties_pretty",
    ]
    readonly_fields = fields

    @admin.display(description="reason")
    def short_reason(self, obj: DeadLetter) -> str:
        return obj.reason if len(obj.reason) <= 120 else f"{obj.reason[:119]}…"

    @admin.display(description="payload")
    def payload_pretty(self, obj: DeadLetter) -> SafeString:
        return _pretty_json(obj.payload)

    @admin.display(description="body (as received)")
    def body_text(self, obj: DeadLetter) -> SafeString:
        return format_html("<pre>{}</pre>", bytes(obj.body).decode(errors="replace")[:20_000])

    @admin.display(description="headers")
    def headers_pretty(self, obj: DeadLetter) -> SafeString:
        return _pretty_json(obj.headers)

    @admin.display(description="AMQP properties")
    def properties_pretty(self, obj: DeadLetter) -> SafeString:
        return _pretty_json(obj.properties)

    # --- the changelist: open counts per service and a "collect now" button -------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        open_by_service = (
            DeadLetter.objects.filter(state=State.OPEN)
            .values("service")
            .annotate(count=Count("id"))
            .order_by("service")
        )
        context = {"open_by_service": list(open_by_service), **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)

    def get_urls(self) -> list:
        view = self.admin_site.admin_view(self.collect_view)
        return [
            path("collect/", view, name="outbox_consumer_deadletter_collect"),
            *super().get_urls(),
        ]

    def collect_view(self, request: HttpRequest) -> HttpResponse:
        """POST: move every service's ``<service>.dead`` into the table now."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        for result in collect_services(all_services()):
            if result.taken:
                self.message_user(
                    request,
                    f"{result.service}: {result.stored} new dead letter(s) "
                    f"({result.duplicates} already here).",
                )
            if result.reduced:
                self.message_user(
                    request,
                    f"{result.service}: {result.reduced} of them stored in reduced form "
                    f"(PostgreSQL refused them as received; they cannot be requeued).",
                    messages.WARNING,
                )
            if result.problem:
                self.message_user(request, f"{result.service}: {result.problem}", messages.ERROR)
        return HttpResponseRedirect(reverse("admin:outbox_consumer_deadletter_changelist"))

    # --- actions ---------------------------------------------------------------------------------

    @admin.action(description="Requeue selected dead letters (after a fix)", permissions=["change"])
    def requeue_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        ids = list(queryset.values_list("id", flat=True))
        result = requeue(ids, by=_who(request), note="requeued from the admin")
        self._report(request, result, "requeued to their service's queue")

    @admin.action(description="Discard selected dead letters…", permissions=["change"])
    def discard_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        form = DiscardForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            ids = list(queryset.values_list("id", flat=True))
            result = discard(ids, by=_who(request), reason=form.cleaned_data["reason"])
            self._report(request, result, "discarded")
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Discard dead letters",
            "opts": self.model._meta,
            "form": form,
            "rows": queryset.order_by("dead_at"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/outbox_consumer/deadletter/discard.html", context)

    def _report(self, request: HttpRequest, result: ResolveResult, what: str) -> None:
        if result.done:
            self.message_user(request, f"{len(result.done)} dead letter(s) {what}.")
        for pk, why in result.skipped.items():
            self.message_user(request, f"#{pk} left as it is: {why}", messages.WARNING)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: DeadLetter | None = None) -> bool:
        return False  # discard keeps the record; prune_events removes resolved rows later


def _who(request: HttpRequest) -> str:
    user = request.user
    return f"admin:{user.get_username()}" if user.is_authenticated else "admin:anonymous"
