"""App configuration of the analytics service."""

from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "consumers.analytics"
    label = "analytics"
    verbose_name = "Analytics service"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the service, its handlers and its reset hook with the consumer framework.
        from consumers.analytics import handlers  # noqa: F401
