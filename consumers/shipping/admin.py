"""Admin for shipments (read-only: they move through events and the delivery clock)."""

from django.contrib import admin

from consumers.shipping.models import Shipment


@admin.register(Shipment)
class ShipmentAdmin(admin.ModelAdmin):
    list_display = ("order_id", "status", "carrier", "tracking_number", "dispatched_at")
    list_filter = ("status", "carrier")
    search_fields = ("order_id", "tracking_number")
    readonly_fields = [f.name for f in Shipment._meta.fields]
