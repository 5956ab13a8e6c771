"""Top-level URL configuration: web UI, JSON API under /api/, and the admin."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
