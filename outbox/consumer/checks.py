"""System checks: a retention configuration that would let a replay apply an event twice."""

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from outbox.retention import get_retention


def check_retention(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``OUTBOX_INBOX_RETENTION_DAYS`` must not be shorter than the replay window (+ margin)."""
    try:
        get_retention()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="outbox_consumer.E001")]
    return []
