"""Top-level URL configuration: web UI, JSON API under /api/, the admin, /healthz, /metrics."""

from django.contrib import admin
from django.urls import include, path

from fitness.api import api
from outbox.health import healthz
from outbox.metrics import metrics_view

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("accounts/", include("apps.accounts.urls")),
    path("cart/", include("apps.carts.urls")),
    path("orders/", include("apps.orders.urls")),
    path("staff/analytics/", include("consumers.analytics.urls")),
    path("", include("apps.catalog.urls")),
]
