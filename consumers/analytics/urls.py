"""URLs of the analytics staff page (mounted at /staff/analytics/ by fitness/urls.py)."""

from django.urls import path

from consumers.analytics import views

app_name = "analytics"
urlpatterns = [path("", views.figures, name="figures")]
