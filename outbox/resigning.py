"""Signing stored outbox rows again with their source's current key (``manage.py resign_outbox``).

Replay (``outbox.replay``) re-sends retained rows exactly as they were signed at record time. Once
a key is retired (rotation step 3), or replaced at once because it leaked, consumers dead-letter
rows signed with it as ``unknown key id``. Re-signing those rows with the key their source signs
with now keeps them replayable. It reuses ``outbox.signing`` as it is: the signature is made by
:func:`~outbox.signing.sign_row`, over what recording signs (the envelope of the row's columns,
its payload, the key id), so a re-signed row is exactly what ``record_event`` would have stored
had the new key been current then.

**Each row's current signature is checked first**, with the old key: a row that does not verify
(altered in the database after it was signed, or claiming a source that is not the key's) is
left as it is and reported, never re-signed — re-signing it would vouch, with a good key, for
what nobody signed. So the old key must still be listed in *this command's*
``OUTBOX_SIGNING_KEYS`` (after the new one); consumers need not have it any more.

**Selection and batches.** Rows are selected by the key id in their ``headers`` (every state:
published, parked and pending). ``headers`` is a jsonb column that no index covers, on purpose
(the relay's mark must stay heap-only, see ``OutboxMessage.Meta``), so finding them reads the
whole table: the scan walks the primary key in windows of ``batch_size`` rows, up to the largest
id at the start (rows recorded later are signed with the new key, once every producer process
runs rotation step 2), and each window is:

1. one read of the window's ids and key ids (no lock), then of the matching rows;
2. the checks and new signatures, in Python;
3. one ``UPDATE`` (its own transaction: autocommit) that replaces the two signature headers
   of the rows still carrying the signature that was checked, and nothing else: ``headers ||``
   the two headers. No other column is written, no index refers to ``headers``, so it is a
   heap-only update where the page has room (the same room the relay's mark uses).

It holds row locks for one short statement per window, can be interrupted at any point, and is
idempotent: a re-signed row no longer carries the old key id, so a second run (from the start)
skips it; a row whose signature changed between the read and the ``UPDATE`` (another run), or
that another transaction holds locked at that moment, is left alone and counted. Run it a second
time to confirm: it finds 0 rows. (That second run
would also catch a row the first one could not see: ids are drawn before commit, so a producer
still signing with the old key could commit a row below a window already walked.)

**Pending rows** are re-signed too (a backlog waiting for the relay). A relay may have claimed
such a row and be sending it at that moment: it sends the copy it read, signed with the old key,
and marks the row published afterwards. Nothing is lost and nothing conflicts: the mark writes
only ``published_at`` and ``attempts``, the re-signing only ``headers``; the mark waits for the
re-signing's row lock and applies its change to the latest version, while the re-signing skips
a row the mark holds (``SKIP LOCKED``: waiting both ways on several rows, locked in different
orders, would be a deadlock) and leaves it to the next run. Either way the stored row ends up
published, and re-signed by this run or the next. The copy in flight verifies wherever the old
key is still listed — which is why, after an ordinary rotation, this is run *before* step 3
removes the old key. When the old key was removed first (a compromised key), that copy is
dead-lettered as ``unknown key id``; its stored row is re-signed, so replaying it
(``replay_events``) delivers a copy that verifies.
"""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connections

from outbox.models import OutboxMessage
from outbox.signing import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    InvalidSignature,
    Keyring,
    SigningConfigError,
    SigningKey,
    get_keyring,
    sign_row,
    verify_row,
)

logger = logging.getLogger(__name__)

# How many refused rows a run keeps, to name them in its report (all are logged and counted).
MAX_REFUSED_EXAMPLES = 20

# One window of the primary key: at most `limit` rows after `after`, up to `last`. Returns where
# the window ends, how many rows it holds, and the ids of those signed with the old key.
# No index covers headers: the key id is read from every row of the window (the PK's range scan
# bounds the window, so each statement reads at most `limit` rows).
SCAN_SQL = """
SELECT max(id), count(*),
       coalesce(array_agg(id) FILTER (WHERE headers ->> %(key_header)s = %(key_id)s), '{}')
FROM (
    SELECT id, headers FROM outbox_message
    WHERE id > %(after)s AND id <= %(last)s
    ORDER BY id
    LIMIT %(limit)s
) AS scanned
"""

# Only the two signature headers change (`||` replaces those keys, keeps every other header as
# it is now), and only on rows still carrying the signature that was checked: a row whose
# signature changed since the read (another run re-signed it) is left as it now is.
# The rows are locked first with SKIP LOCKED: a row another transaction holds (the relay's mark
# of a pending row, which locks its rows in its own order) is left for the next run instead of
# waited for, so the two statements can never wait for each other (a deadlock would abort one).
RESIGN_SQL = """
WITH v AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS v(id bigint, signature jsonb, checked text)
), free AS (
    SELECT id FROM outbox_message WHERE id IN (SELECT id FROM v)
    FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE outbox_message AS m SET headers = m.headers || v.signature
FROM v JOIN free USING (id)
WHERE m.id = v.id
  AND m.headers ->> %(key_header)s = %(key_id)s
  AND m.headers ->> %(signature_header)s = v.checked
"""


@dataclass
class Resigned:
    """What one ``resign_outbox`` run did (or, in a dry run, would do), so far."""

    old_key: str
    new_key: str
    source: str
    dry_run: bool = False
    last_id: int = 0  # the largest id when the run started: where the scan ends
    position: int = 0  # the last id scanned
    scanned: int = 0
    batches: int = 0
    resigned: int = 0  # re-signed (a dry run: would be)
    # Signature changed between the read and the UPDATE, or row busy (locked by another
    # transaction, e.g. the relay's mark): left as they are, for the next run.
    changed: int = 0
    refused: int = 0  # did not verify with the old key: left as they are
    refused_examples: list[str] = field(default_factory=list)


def resign_keys(*, key_id: str, source: str | None = None) -> tuple[SigningKey, SigningKey]:
    """The old key (``key_id``) and the key its source signs with now.

    Raises :class:`SigningConfigError`, with what to do, when there is nothing to re-sign with:
    ``source`` has no key, ``key_id`` is not listed (the rows' signatures cannot be checked) or
    belongs to another source, or it is still the key its source signs with (rotation step 2
    not done).
    """
    keyring = get_keyring()
    if source is not None:
        keyring.current(source)  # raises: no signing key configured for this source
    old = keyring.by_id(key_id)
    if old is None:
        raise SigningConfigError(
            f"key id {key_id!r} is not in OUTBOX_SIGNING_KEYS: resign_outbox checks every row's "
            "signature with it before signing the row again (it never vouches for a row altered "
            "since it was signed); list it after its source's new key in this command's "
            "environment (consumers need not have it)"
        )
    if source is not None and old.source != source:
        raise SigningConfigError(f"key {key_id!r} belongs to {old.source!r}, not to {source!r}")
    new = keyring.current(old.source)
    if new.key_id == old.key_id:
        raise SigningConfigError(
            f"nothing to do: {key_id!r} is still the key {old.source!r} signs with (the first of "
            "its keys in OUTBOX_SIGNING_KEYS); list the new key first (rotation step 2, "
            "docs/security.md), then run this again"
        )
    return old, new


def outbox_resign(
    *,
    key_id: str,
    source: str | None = None,
    batch_size: int = 1000,
    dry_run: bool = False,
    using: str = "default",
    progress: Callable[[Resigned], None] | None = None,
) -> Resigned:
    """Sign every row signed with ``key_id`` again, with the key its source signs with now.

    Walks the whole table in windows of ``batch_size`` rows (see the module docstring); calls
    ``progress`` after each. ``dry_run`` checks and counts, and writes nothing. Raises
    :class:`SigningConfigError` before reading anything when there is nothing to re-sign with
    (:func:`resign_keys`). Rows that do not verify with the old key are counted in ``refused``,
    logged, and left as they are.
    """
    old, new = resign_keys(key_id=key_id, source=source)
    keyring = get_keyring()
    result = Resigned(old_key=old.key_id, new_key=new.key_id, source=old.source, dry_run=dry_run)
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM outbox_message")
        result.last_id = int(cursor.fetchone()[0])
    while result.position < result.last_id:
        end, scanned, ids = _scan_window(result, batch_size=batch_size, using=using)
        if end is None:  # no row left up to last_id
            break
        result.position = end
        result.batches += 1
        result.scanned += scanned
        if ids:
            _resign_rows(ids, old=old, new=new, keyring=keyring, result=result, using=using)
        if progress is not None:
            progress(result)
    return result


def _scan_window(result: Resigned, *, batch_size: int, using: str) -> tuple[int | None, int, list]:
    """(last id of the window, rows in it, ids of its rows signed with the old key)."""
    params = {
        "key_header": KEY_ID_HEADER,
        "key_id": result.old_key,
        "after": result.position,
        "last": result.last_id,
        "limit": batch_size,
    }
    with connections[using].cursor() as cursor:
        cursor.execute(SCAN_SQL, params)
        end, scanned, ids = cursor.fetchone()
    return end, int(scanned), list(ids)


def _resign_rows(
    ids: list[int],
    *,
    old: SigningKey,
    new: SigningKey,
    keyring: Keyring,
    result: Resigned,
    using: str,
) -> None:
    """Check and sign again the rows ``ids`` (one window's); write them unless a dry run."""
    updates: list[dict] = []
    for row in OutboxMessage.objects.using(using).filter(id__in=ids).order_by("id"):
        try:
            verify_row(row, keyring=keyring)
        except InvalidSignature as exc:
            _refuse(row, str(exc), result)
            continue
        checked = row.headers[SIGNATURE_HEADER]
        sign_row(row, key=new)
        signature = {name: row.headers[name] for name in (SIGNATURE_HEADER, KEY_ID_HEADER)}
        updates.append({"id": row.id, "signature": signature, "checked": checked})
    if result.dry_run or not updates:
        result.resigned += len(updates)
        return
    params = {
        # One JSON document rather than three arrays: one parameter to quote, not 3 x 1000.
        "rows": json.dumps(updates),
        "key_header": KEY_ID_HEADER,
        "key_id": old.key_id,
        "signature_header": SIGNATURE_HEADER,
    }
    with connections[using].cursor() as cursor:
        cursor.execute(RESIGN_SQL, params)
        updated = cursor.rowcount
    result.resigned += updated
    result.changed += len(updates) - updated


def _refuse(row: OutboxMessage, reason: str, result: Resigned) -> None:
    """Count, log and remember a row that does not verify with the old key."""
    result.refused += 1
    example = f"row {row.id} (event {row.event_id}): {reason}"
    if len(result.refused_examples) < MAX_REFUSED_EXAMPLES:
        result.refused_examples.append(example)
    logger.warning("resign_outbox: not re-signed, %s", example)
