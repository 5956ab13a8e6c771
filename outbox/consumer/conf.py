"""The consumer framework's settings (``OUTBOX_CONSUMER_*``), read on every call."""

import os
from dataclasses import dataclass

from django.conf import settings

# TEST-ONLY: seconds to sleep after the handler's transaction committed and before the ack, so a
# test can SIGKILL the worker in exactly that window (outbox/consumer/tests/test_kill.py).
# Never set it in production: it only slows the worker down.
PAUSE_BEFORE_ACK_ENV = "OUTBOX_TEST_PAUSE_BEFORE_ACK"


@dataclass(frozen=True)
class ConsumerSettings:
    """A typed snapshot of the consumer settings (see docs/consumers.md)."""

    retry_base: float  # delay before the 1st retry (seconds); doubles with each retry
    retry_max: float  # cap of one delay (seconds)
    publish_timeout: float  # seconds to wait for the broker's confirm of a retry/dead copy
    heartbeat: float  # AMQP heartbeat of ``consume_events``' connection (0 = off)
    pause_before_ack: float  # TEST-ONLY, from the environment
    # Services that accept django-outbox-pattern's (unsigned, envelope-less) messages during a
    # switch-over; every other service dead-letters them.
    accept_outbox_pattern: frozenset[str]


def get_consumer_settings() -> ConsumerSettings:
    """Return the current consumer settings with their documented defaults."""
    return ConsumerSettings(
        retry_base=float(getattr(settings, "OUTBOX_CONSUMER_RETRY_BASE", 1.0)),
        retry_max=float(getattr(settings, "OUTBOX_CONSUMER_RETRY_MAX", 300.0)),
        publish_timeout=float(getattr(settings, "OUTBOX_CONSUMER_PUBLISH_TIMEOUT", 10.0)),
        heartbeat=float(getattr(settings, "OUTBOX_CONSUMER_HEARTBEAT", 60.0)),
        pause_before_ack=float(os.environ.get(PAUSE_BEFORE_ACK_ENV) or 0),
        accept_outbox_pattern=frozenset(
            getattr(settings, "OUTBOX_CONSUMER_ACCEPT_OUTBOX_PATTERN", ())
        ),
    )
