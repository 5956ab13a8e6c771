"""Admin for orders: staff read orders and their timeline; the status is read-only because
only the saga (events) moves it."""

from django.contrib import admin

from apps.orders.models import Order, OrderLine, OrderTimelineEntry


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    can_delete = False
    readonly_fields = ("product", "sku", "name", "unit_price", "quantity")


class OrderTimelineInline(admin.TabularInline):
    model = OrderTimelineEntry
    extra = 0
    can_delete = False
    readonly_fields = ("created_at", "kind", "status", "message", "source", "event_id")


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("id", "customer", "status", "total", "delivery_method", "placed_at")
    list_filter = ("status", "delivery_method", "placed_at")
    search_fields = ("id", "customer__username", "customer__email", "ship_name")
    readonly_fields = (
        "status",
        "customer",
        "subtotal",
        "delivery_cost",
        "total",
        "currency",
        "card_brand",
        "card_last4",
        "card_exp_month",
        "card_exp_year",
        "payment_token",
        "correlation_id",
        "placed_at",
        "updated_at",
    )
    inlines = [OrderLineInline, OrderTimelineInline]
