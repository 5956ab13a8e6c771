"""Admin for shipments (read-only: they move through events and the delivery clock)."""

from django.contrib import admin

from consumers.shipping.models import CancelledOrder, Shipment


@admin.register(Shipment)
class ShipmentAdmin(admin.ModelAdmin):
    list_display = ("order_id", "status", "carrier", "tracking_number", "dispatched_at")
    list_filter = ("status", "carrier")
    search_fields = ("order_id", "tracking_number")
    readonly_fields = [f.name for f in Shipment._meta.fields]


@admin.register(CancelledOrder)
class CancelledOrderAdmin(admin.ModelAdmin):
    """Cancelled orders; filter "parcel already dispatched" for the parcels to get back."""

    list_display = ("order_id", "parcel_already_dispatched", "reason", "received_at")
    list_filter = ("parcel_already_dispatched",)
    search_fields = ("order_id",)
    readonly_fields = [f.name for f in CancelledOrder._meta.fields]
