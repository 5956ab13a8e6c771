"""App configuration for `apps.carts`."""

from django.apps import AppConfig


class CartsConfig(AppConfig):
    name = "apps.carts"
    label = "carts"
