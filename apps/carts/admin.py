"""Admin for carts (read mostly; useful when helping a customer)."""

from django.contrib import admin

from apps.carts.models import Cart, CartItem


class CartItemInline(admin.TabularInline):
    model = CartItem
    extra = 0
    raw_id_fields = ("product",)


@admin.register(Cart)
class CartAdmin(admin.ModelAdmin):
    list_display = ("customer", "updated_at")
    search_fields = ("customer__username", "customer__email")
    inlines = [CartItemInline]
