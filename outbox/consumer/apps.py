"""App configuration of the consumer framework (its own label, models and migrations)."""

from django.apps import AppConfig


class ConsumerConfig(AppConfig):
    """The inbox tables; services register themselves from their own apps' ``ready()``."""

    name = "outbox.consumer"
    label = "outbox_consumer"
    verbose_name = "Outbox consumers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Refuse, at start-up, an inbox retention shorter than the replay window."""
        from django.core import checks

        from outbox.consumer.checks import check_retention

        checks.register(check_retention)
