"""Read-only admin for the analytics tables (they change only through events)."""

from django.contrib import admin

from consumers.analytics.models import OrderFact, ProductDailySales


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False


@admin.register(OrderFact)
class OrderFactAdmin(ReadOnlyAdmin):
    list_display = ("order_id", "status", "placed_at", "total", "paid_at", "delivered_at")
    search_fields = ("order_id",)


@admin.register(ProductDailySales)
class ProductDailySalesAdmin(ReadOnlyAdmin):
    list_display = ("day", "sku", "name", "units", "revenue")
    list_filter = ("day",)
    search_fields = ("sku", "name")
