"""How long events are kept: published outbox rows, inbox entries, resolved dead letters.

One rule ties them together: **the inbox must remember an event at least as long as the event
can be replayed**. Replay re-delivers published outbox rows; a row is replayable until it is
pruned, ``OUTBOX_RETENTION_DAYS`` after it was published. A consumer handled the event *after*
it was published, so an inbox that keeps entries for at least as long (plus a margin for clock
skew between databases and for a prune run that comes late) recognises every replayed event it
already applied. A shorter inbox retention would let a replay apply an event twice, so it is
refused with :class:`~django.core.exceptions.ImproperlyConfigured` (and by a system check).

Settings (days, fractions allowed):

* ``OUTBOX_RETENTION_DAYS`` (30): published outbox rows, i.e. the replay window.
* ``OUTBOX_INBOX_RETENTION_DAYS`` (retention + ``INBOX_MARGIN_DAYS``): inbox entries; at least
  retention + ``MIN_INBOX_MARGIN_DAYS``.
* ``OUTBOX_DEAD_LETTER_RETENTION_DAYS`` (30): dead letters after they were requeued or discarded
  (open ones are never pruned).
* ``OUTBOX_PRUNE_BATCH_SIZE`` (5000) rows per DELETE, ``OUTBOX_PRUNE_MAX_BATCHES`` (200) DELETEs
  per table and database in one run: a run is bounded, the next one continues.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

DEFAULT_RETENTION_DAYS = 30.0
# Default extra time the inbox keeps entries beyond the replay window.
INBOX_MARGIN_DAYS = 7.0
# The smallest margin accepted: covers clock skew and a prune run that is late by up to a day.
MIN_INBOX_MARGIN_DAYS = 1.0
DEFAULT_DEAD_LETTER_RETENTION_DAYS = 30.0
DEFAULT_PRUNE_BATCH_SIZE = 5_000
DEFAULT_PRUNE_MAX_BATCHES = 200


@dataclass(frozen=True)
class Retention:
    """A validated snapshot of the retention settings."""

    outbox: timedelta  # published outbox rows: the replay window
    inbox: timedelta  # inbox entries (always >= outbox + MIN_INBOX_MARGIN_DAYS)
    dead_letters: timedelta  # resolved dead letters
    batch_size: int
    max_batches: int


def _days(name: str, default: float | None) -> float | None:
    value = getattr(settings, name, None)
    if value is None or value == "":
        return default
    try:
        days = float(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name}={value!r} is not a number of days") from None
    if days <= 0:
        raise ImproperlyConfigured(f"{name}={value!r} must be a positive number of days")
    return days


def _positive_int(name: str, default: int) -> int:
    value = getattr(settings, name, None)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None
    if number < 1:
        raise ImproperlyConfigured(f"{name}={value!r} must be at least 1")
    return number


def get_retention() -> Retention:
    """Read and validate the retention settings; raises ImproperlyConfigured when they clash."""
    outbox_days = _days("OUTBOX_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)
    assert outbox_days is not None
    inbox_days = _days("OUTBOX_INBOX_RETENTION_DAYS", None)
    minimum = outbox_days + MIN_INBOX_MARGIN_DAYS
    if inbox_days is None:
        inbox_days = outbox_days + INBOX_MARGIN_DAYS
    elif inbox_days < minimum:
        raise ImproperlyConfigured(
            f"OUTBOX_INBOX_RETENTION_DAYS={inbox_days:g} is shorter than the replay window "
            f"OUTBOX_RETENTION_DAYS={outbox_days:g} plus a {MIN_INBOX_MARGIN_DAYS:g}-day margin: "
            "the inbox would forget events that can still be replayed, and a replay would apply "
            f"them twice. Set it to at least {minimum:g}, or leave it unset "
            f"(default {outbox_days + INBOX_MARGIN_DAYS:g})."
        )
    dead_days = _days("OUTBOX_DEAD_LETTER_RETENTION_DAYS", DEFAULT_DEAD_LETTER_RETENTION_DAYS)
    assert dead_days is not None
    return Retention(
        outbox=timedelta(days=outbox_days),
        inbox=timedelta(days=inbox_days),
        dead_letters=timedelta(days=dead_days),
        batch_size=_positive_int("OUTBOX_PRUNE_BATCH_SIZE", DEFAULT_PRUNE_BATCH_SIZE),
        max_batches=_positive_int("OUTBOX_PRUNE_MAX_BATCHES", DEFAULT_PRUNE_MAX_BATCHES),
    )


def inbox_memory_start(
    *, now: datetime | None = None, margin: timedelta = timedelta(days=MIN_INBOX_MARGIN_DAYS)
) -> datetime:
    """The oldest event time whose handling every inbox surely still remembers.

    ``prune_events`` deletes inbox entries *handled* more than ``inbox`` ago, and an event is
    handled after it occurred, so an event that occurred since ``now - inbox`` is still in every
    inbox that applied it. ``margin`` (a day) less again covers clock skew between the
    producer's and the consumer's databases and a prune run of the same hour. Older events may
    be forgotten: a plain replay could apply them a second time (``replay_events`` refuses them,
    see docs/replay.md).
    """
    return (now or timezone.now()) - get_retention().inbox + margin
