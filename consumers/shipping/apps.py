"""App configuration of the shipping service."""

from django.apps import AppConfig


class ShippingConfig(AppConfig):
    name = "consumers.shipping"
    label = "shipping"
    verbose_name = "Shipping service"

    def ready(self) -> None:
        # Registers the service and its handlers with the consumer framework.
        from consumers.shipping import handlers  # noqa: F401
