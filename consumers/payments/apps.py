"""App configuration of the payments service."""

from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "consumers.payments"
    label = "payments"
    verbose_name = "Payments service"

    def ready(self) -> None:
        # Registers the service and its handlers with the consumer framework.
        from consumers.payments import handlers  # noqa: F401
