"""App configuration for the reusable ``outbox`` library."""

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class OutboxConfig(AppConfig):
    """Collects event types and broker topology from every installed app at start-up."""

    name = "outbox"
    label = "outbox"
    verbose_name = "Outbox"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Import each app's ``events`` (event types) and ``topology`` (broker declarations);
        register the outbox's system checks."""
        from django.core import checks

        from outbox.checks import check_future_skew, check_signing_keys

        checks.register(check_signing_keys)
        checks.register(check_future_skew)
        # Imported here: topology registers the exchanges contributor, which needs the registry.
        from outbox import topology  # noqa: F401

        autodiscover_modules("events")
        autodiscover_modules("topology")
