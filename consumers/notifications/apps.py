"""App configuration of the notifications service."""

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "consumers.notifications"
    label = "notifications"
    verbose_name = "Notifications service"

    def ready(self) -> None:
        # Registers the service and its handlers with the consumer framework.
        from consumers.notifications import handlers  # noqa: F401
