"""App configuration for `apps.orders`."""

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "apps.orders"
    label = "orders"

    def ready(self) -> None:
        # Registers the monolith's consumer service "orders" (reactions to the saga's events).
        from apps.orders import handlers  # noqa: F401
