"""Admin for sent notifications (read-only)."""

from django.contrib import admin

from consumers.notifications.models import Notification, Recipient


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("order_id", "kind", "recipient", "subject", "sent_at")
    list_filter = ("kind",)
    search_fields = ("order_id", "recipient")
    readonly_fields = [f.name for f in Notification._meta.fields]


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    list_display = ("order_id", "email", "name")
    search_fields = ("order_id", "email")
