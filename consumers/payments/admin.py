"""Admin for the payments service's tables (read-only: payments move only through events)."""

from django.contrib import admin

from consumers.payments.models import CancelledOrder, Payment


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ("order_id", "status", "amount", "currency", "card_brand", "card_last4")
    list_filter = ("status", "card_brand")
    search_fields = ("order_id", "correlation_id")
    readonly_fields = [f.name for f in Payment._meta.fields]


@admin.register(CancelledOrder)
class CancelledOrderAdmin(admin.ModelAdmin):
    list_display = ("order_id", "reason", "received_at")
    readonly_fields = ("order_id", "reason", "received_at")
