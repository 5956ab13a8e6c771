"""System checks of the outbox: signing keys that parse, a key for every producing source, and
settings whose nonsense values would switch a safeguard off silently."""

import math
from typing import Any

from django.core import checks

from outbox.conf import get_settings
from outbox.registry import all_event_types
from outbox.retention import MIN_INBOX_MARGIN_DAYS
from outbox.signing import SigningConfigError, get_keyring


def check_signing_keys(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``OUTBOX_SIGNING_KEYS`` parses and is not empty; warn about sources without a key.

    A source without a key is only a warning: in a least-privilege deployment a process holds
    the keys of the sources it produces and consumes, not every source of the registry. Recording
    an event of such a source still fails, loudly, and rolls back its transaction.
    """
    try:
        keyring = get_keyring()
    except SigningConfigError as exc:
        return [checks.Error(str(exc), id="outbox.E001")]
    if not keyring.keys:
        return [
            checks.Error(
                "OUTBOX_SIGNING_KEYS is empty: no event can be signed, and consumers reject "
                "every event as unsigned",
                hint="Set OUTBOX_SIGNING_KEYS=<source>:<key id>:<secret>,... (docs/security.md).",
                id="outbox.E002",
            )
        ]
    default_source = get_settings().source
    producing = {event_type.source or default_source for event_type in all_event_types()}
    return [
        checks.Warning(
            f"no signing key for source {source!r}: its events cannot be recorded here",
            hint="Add <source>:<key id>:<secret> to OUTBOX_SIGNING_KEYS if this process "
            "records them.",
            id="outbox.W001",
        )
        for source in sorted(producing - keyring.sources)
    ]


def check_future_skew(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``OUTBOX_MAX_FUTURE_SKEW`` is a finite number of seconds, 0 or more, below the inbox's
    margin.

    ``nan`` would switch ``record_event``'s check of ``occurred_at`` off without a word (no
    comparison with it is true), and a negative value would refuse events dated a moment ago.
    Replay trusts an event dated less than the inbox retention ago, less a margin of
    ``MIN_INBOX_MARGIN_DAYS`` for skewed clocks (``retention.inbox_memory_start``): an event
    allowed to lie further ahead than that margin could be replayed after its inbox entry was
    pruned, and applied twice.
    """
    skew = get_settings().max_future_skew
    margin = MIN_INBOX_MARGIN_DAYS * 86400
    if math.isfinite(skew) and 0 <= skew < margin:
        return []
    return [
        checks.Error(
            f"OUTBOX_MAX_FUTURE_SKEW is {skew!r}: it must be a number of seconds from 0 to less "
            f"than the inbox's {margin:g} s margin (MIN_INBOX_MARGIN_DAYS), or a replay could "
            "apply an event its inbox has forgotten",
            hint="Leave it unset (300 s) or give the seconds an occurred_at may lie ahead of the "
            "producer's clock: minutes (docs/outbox.md).",
            id="outbox.E003",
        )
    ]
