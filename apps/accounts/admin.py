"""Admin for API tokens (customers themselves use Django's user admin)."""

from django.contrib import admin

from apps.accounts.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("customer", "created_at", "expires_at", "last_used_at")
    search_fields = ("customer__username",)
    readonly_fields = ("customer", "key_hash", "created_at", "last_used_at")
