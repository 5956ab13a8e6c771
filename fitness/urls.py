"""Top-level URL configuration: web UI, JSON API under /api/, and the admin."""

from django.contrib import admin
from django.urls import include, path

from fitness.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("accounts/", include("apps.accounts.urls")),
    path("cart/", include("apps.carts.urls")),
    path("orders/", include("apps.orders.urls")),
    path("", include("apps.catalog.urls")),
]
