"""System checks of the outbox: signing keys that parse, a key for every producing source, and
settings whose nonsense values would switch a safeguard off silently."""

import math
from typing import Any

from django.core import checks

from outbox.conf import get_settings
from outbox.registry import all_event_types
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
    """``OUTBOX_MAX_FUTURE_SKEW`` is a finite number of seconds, not negative.

    ``nan`` would switch ``record_event``'s check of ``occurred_at`` off without a word (no
    comparison with it is true), and a negative value would refuse events dated a moment ago.
    """
    skew = get_settings().max_future_skew
    if math.isfinite(skew) and skew >= 0:
        return []
    return [
        checks.Error(
            f"OUTBOX_MAX_FUTURE_SKEW is {skew!r}: it must be a finite number of seconds, 0 or more",
            hint="Leave it unset (300 s) or give the seconds an occurred_at may lie ahead of the "
            "producer's clock (docs/outbox.md).",
            id="outbox.E003",
        )
    ]
