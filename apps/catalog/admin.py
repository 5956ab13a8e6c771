"""Admin for products: staff edit prices and stock here."""

from django.contrib import admin

from apps.catalog.models import Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "price", "stock", "updated_at")
    list_editable = ("stock",)
    search_fields = ("sku", "name", "description")
    readonly_fields = ("created_at", "updated_at")
