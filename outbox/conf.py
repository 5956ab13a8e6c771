"""The outbox's settings, read from Django settings with defaults (all names start ``OUTBOX_``).

Read on every call rather than cached at import time so that ``override_settings`` in tests and
settings changed between management commands are honoured.
"""

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class OutboxSettings:
    """A typed snapshot of the ``OUTBOX_*`` settings (see docs/outbox.md for each one)."""

    source: str
    broker_url: str
    partitions: int
    batch_size: int
    max_in_flight: int
    poll_interval: float
    max_attempts: int
    backoff_base: float
    backoff_max: float
    max_message_bytes: int
    confirm_timeout: float
    connect_timeout: float
    reconnect_max_delay: float
    lease_interval: float
    max_future_skew: float


def get_settings() -> OutboxSettings:
    """Return the current outbox settings, falling back to the documented defaults."""

    def get(name: str, default: object) -> object:
        return getattr(settings, f"OUTBOX_{name}", default)

    return OutboxSettings(
        source=str(get("SOURCE", "fitness.monolith")),
        broker_url=str(get("BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")),
        partitions=int(get("PARTITIONS", 16)),
        batch_size=int(get("BATCH_SIZE", 500)),
        max_in_flight=int(get("MAX_IN_FLIGHT", 1500)),
        poll_interval=float(get("POLL_INTERVAL", 1.0)),
        max_attempts=int(get("MAX_ATTEMPTS", 10)),
        backoff_base=float(get("BACKOFF_BASE", 1.0)),
        backoff_max=float(get("BACKOFF_MAX", 300.0)),
        max_message_bytes=int(get("MAX_MESSAGE_BYTES", 1024 * 1024)),
        confirm_timeout=float(get("CONFIRM_TIMEOUT", 30.0)),
        connect_timeout=float(get("CONNECT_TIMEOUT", 5.0)),
        reconnect_max_delay=float(get("RECONNECT_MAX_DELAY", 30.0)),
        lease_interval=float(get("LEASE_INTERVAL", 2.0)),
        # Seconds an ``occurred_at`` given to record_event may be ahead of the recording
        # process's clock (outbox.recording.validate_occurred_at).
        max_future_skew=float(get("MAX_FUTURE_SKEW", 300.0)),
    )
