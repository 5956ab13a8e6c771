"""Event signatures: HMAC-SHA256 over the envelope and the payload, one key per producing source.

Events are signed where they are recorded (``outbox.recording.record_event``, inside the
producer's own process) and the signature travels in the row's extra headers, so the relay and
``replay_events`` — which read several services' outboxes — never hold anyone's key.

What is signed is a *canonical form*, not the bytes on the wire: the relay sends the payload's
text as stored, which need not be what the producer's ``json.dumps`` gave when it signed (rows
stored before migration 0009 went through jsonb: key order, spacing, number notation). The
verifier parses the delivery and recomputes the same form:

    b"outbox-hmac-v1\\n" + sorted-key compact JSON of {the envelope attributes, "keyid", "data"}

Integral numbers are written as exact integers (``1e+20`` and jsonb's
``100000000000000000000`` are one number), strings with ASCII escapes, time in UTC with
microseconds. Headers: ``x-outbox-signature: v1=<hex>`` and ``x-outbox-key-id: <key id>``.

Keys come from ``OUTBOX_SIGNING_KEYS``: ``<source>:<key id>:<secret>`` entries separated by commas
or white space. A source may have several keys (rotation): it signs with the *first* one listed,
and every listed key verifies. See docs/security.md for the rotation procedure.
"""

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.conf import settings

from outbox.exceptions import OutboxError, PermanentError

if TYPE_CHECKING:
    from outbox.models import OutboxMessage

SIGNATURE_HEADER = "x-outbox-signature"
KEY_ID_HEADER = "x-outbox-key-id"
SCHEME = "v1"
_PREFIX = b"outbox-hmac-v1\n"
# 32 characters of a random token (secrets.token_urlsafe(32) gives 43): at least 190 bits.
MIN_SECRET_LENGTH = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
KEY_FORMAT = "<source>:<key id>:<secret>[,<source>:<key id>:<secret>...]"


class SigningConfigError(OutboxError):
    """``OUTBOX_SIGNING_KEYS`` is malformed, or has no key for a source that must sign."""


class InvalidSignature(PermanentError):
    """A delivery is unsigned, forged, altered, signed with an unknown key or another source's.

    Terminal: the consumer dead-letters it with this message as the reason. ``kind`` is one of
    :data:`FAILURE_KINDS` (a bounded metric label; the message has the details).
    """

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        super().__init__(f"signature check failed: {reason}")


# Why a signature check failed, in words a dashboard can group by.
FAILURE_KINDS = (
    "unsigned",  # no signature at all
    "malformed",  # half a signature, or a scheme this code does not know
    "unknown_key",  # a key id not configured here (retired, or not added yet)
    "source_mismatch",  # a key of another source, or a type its source does not publish
    "bad_signature",  # forged, or altered after signing
)


@dataclass(frozen=True)
class SigningKey:
    """One HMAC key: the source (producing service) it belongs to, its id, and the secret."""

    source: str
    key_id: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class Keyring:
    """Every configured key; per source, the first one listed is the one that signs."""

    keys: tuple[SigningKey, ...] = ()

    def by_id(self, key_id: str) -> SigningKey | None:
        """The key with this id, or None when it is not configured (retired, or unknown)."""
        return next((key for key in self.keys if key.key_id == key_id), None)

    def current(self, source: str) -> SigningKey:
        """The key ``source`` signs with now; :class:`SigningConfigError` when it has none."""
        for key in self.keys:
            if key.source == source:
                return key
        raise SigningConfigError(
            f"no signing key for source {source!r} in OUTBOX_SIGNING_KEYS "
            f"(format {KEY_FORMAT}; see docs/security.md)"
        )

    @property
    def sources(self) -> set[str]:
        """The sources that have at least one key."""
        return {key.source for key in self.keys}


def parse_keyring(spec: str | Iterable[str] | None) -> Keyring:
    """Read ``OUTBOX_SIGNING_KEYS`` (a string, or a list of ``source:key id:secret`` entries)."""
    if spec is None:
        return Keyring()
    text = spec if isinstance(spec, str) else ",".join(spec)
    return _parse(text)


@lru_cache(maxsize=16)
def _parse(text: str) -> Keyring:
    keys: list[SigningKey] = []
    for entry in re.split(r"[,\s]+", text.strip()):
        if entry:
            keys.append(_parse_entry(entry))
    seen: set[str] = set()
    for key in keys:
        if key.key_id in seen:
            raise SigningConfigError(f"OUTBOX_SIGNING_KEYS: key id {key.key_id!r} is listed twice")
        seen.add(key.key_id)
    return Keyring(tuple(keys))


def _parse_entry(entry: str) -> SigningKey:
    parts = entry.split(":", 2)
    # Never echo the entry itself: it holds a secret.
    if len(parts) != 3 or not all(parts):
        raise SigningConfigError(
            f"OUTBOX_SIGNING_KEYS: an entry is not {KEY_FORMAT.split('[')[0]!r}"
        )
    source, key_id, secret = parts
    if not _KEY_ID.match(key_id):
        raise SigningConfigError(
            f"OUTBOX_SIGNING_KEYS: a key id of source {source!r} must be 1-64 of A-Z a-z 0-9 . _ -"
        )
    if len(secret) < MIN_SECRET_LENGTH:
        raise SigningConfigError(
            # Not the key id either: with the two swapped by mistake, it is the secret.
            f"OUTBOX_SIGNING_KEYS: a secret of source {source!r} is shorter than "
            f"{MIN_SECRET_LENGTH} characters (use secrets.token_urlsafe(32))"
        )
    return SigningKey(source=source, key_id=key_id, secret=secret.encode())


def get_keyring() -> Keyring:
    """The keys of ``OUTBOX_SIGNING_KEYS`` (parsed once per distinct value)."""
    return parse_keyring(getattr(settings, "OUTBOX_SIGNING_KEYS", None))


@dataclass(frozen=True)
class Envelope:
    """The CloudEvents attributes a signature covers (everything a consumer relies on).

    Not covered, on purpose: routing (exchange, routing key — a replay reroutes), the AMQP
    properties that only repeat these (``message_id`` must equal ``id`` anyway), the replay and
    retry bookkeeping headers, and ``traceparent`` (tracing context is per hop, not content).
    """

    id: str
    source: str
    type: str
    specversion: str
    dataversion: int
    time: datetime
    subject: str
    aggregatetype: str
    sequence: int | None
    correlationid: str
    causationid: str | None
    datacontenttype: str | None

    @classmethod
    def of_row(cls, row: "OutboxMessage") -> "Envelope":
        """The envelope ``outbox.wire`` will put on the wire for an outbox row."""
        from outbox.wire import CONTENT_TYPE, SPECVERSION

        return cls(
            id=str(row.event_id),
            source=row.source,
            type=row.type,
            specversion=SPECVERSION,
            dataversion=row.schema_version,
            time=row.occurred_at,
            subject=row.aggregate_id,
            aggregatetype=row.aggregate_type,
            sequence=row.sequence,
            correlationid=row.correlation_id,
            causationid=row.causation_id or None,
            datacontenttype=CONTENT_TYPE,
        )


def signing_input(envelope: Envelope, payload: Mapping[str, Any], *, key_id: str) -> bytes:
    """The bytes the HMAC is computed over (see the module docstring)."""
    document = {
        "id": envelope.id.lower(),
        "source": envelope.source,
        "type": envelope.type,
        "specversion": envelope.specversion,
        "dataversion": envelope.dataversion,
        "time": envelope.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "subject": envelope.subject,
        "aggregatetype": envelope.aggregatetype,
        "sequence": envelope.sequence,
        "correlationid": envelope.correlationid,
        "causationid": envelope.causationid or None,
        "datacontenttype": envelope.datacontenttype,
        "keyid": key_id,
        "data": payload,
    }
    return _PREFIX + canonical_json(document).encode("ascii")


def sign(envelope: Envelope, payload: Mapping[str, Any], key: SigningKey) -> dict[str, str]:
    """The signature headers for an event: ``x-outbox-signature`` and ``x-outbox-key-id``."""
    if envelope.source != key.source:
        raise SigningConfigError(
            f"key {key.key_id!r} belongs to {key.source!r}, not to {envelope.source!r}"
        )
    return {SIGNATURE_HEADER: _digest(envelope, payload, key), KEY_ID_HEADER: key.key_id}


def sign_row(row: "OutboxMessage", *, key: SigningKey | None = None) -> "OutboxMessage":
    """Add the signature headers to an outbox row, with its source's current key (or ``key``).

    ``record_event`` signs each new row so; ``resign_outbox`` (``outbox.resigning``) signs
    stored rows again, with the key their source signs with now, replacing the two headers.
    """
    key = key or get_keyring().current(row.source)
    # The payload exactly as JSON will carry it: tuples become lists, non-string keys strings.
    payload = json.loads(json.dumps(row.payload, allow_nan=False))
    row.headers = {**(row.headers or {}), **sign(Envelope.of_row(row), payload, key)}
    return row


def verify_row(row: "OutboxMessage", *, keyring: Keyring | None = None) -> SigningKey:
    """Check a stored outbox row's signature as a consumer will check it once it is sent;
    return the key, or raise :class:`InvalidSignature`.

    For a row read from the database (its payload decoded from the stored JSON text): the
    envelope is the one ``outbox.wire`` sends, so this is the consumer's check minus the wire.
    """
    return verify(Envelope.of_row(row), row.payload, row.headers or {}, keyring=keyring)


def verify(
    envelope: Envelope,
    payload: Mapping[str, Any],
    headers: Mapping[str, Any],
    *,
    keyring: Keyring | None = None,
) -> SigningKey:
    """Check a received event's signature; return the key, or raise :class:`InvalidSignature`.

    The reasons tell an operator what to do: an unsigned or forged event is an incident, an
    unknown key id usually a consumer whose ``OUTBOX_SIGNING_KEYS`` lacks a new key (fix the
    configuration, then requeue the dead letters).
    """
    keyring = keyring if keyring is not None else get_keyring()
    signature, key_id = _text(headers.get(SIGNATURE_HEADER)), _text(headers.get(KEY_ID_HEADER))
    if not signature and not key_id:
        raise InvalidSignature("unsigned", f"unsigned event (no {SIGNATURE_HEADER} header)")
    if not signature or not key_id:
        raise InvalidSignature(
            "malformed", f"{SIGNATURE_HEADER} and {KEY_ID_HEADER} must both be present"
        )
    key = keyring.by_id(key_id)
    if key is None:
        raise InvalidSignature(
            "unknown_key",
            f"unknown key id {key_id!r} (not in this consumer's OUTBOX_SIGNING_KEYS: "
            "a retired key, or a new one not configured here yet)",
        )
    if key.source != envelope.source:
        raise InvalidSignature(
            "source_mismatch",
            f"source mismatch: key {key_id!r} belongs to {key.source!r}, "
            f"the event claims source {envelope.source!r}",
        )
    if not signature.startswith(f"{SCHEME}="):
        raise InvalidSignature("malformed", f"unsupported signature scheme in {signature[:16]!r}")
    # Compared as bytes: compare_digest raises TypeError for a str with non-ASCII characters,
    # which would turn a garbled signature into a crash of the check instead of a dead letter.
    try:
        expected = _digest(envelope, payload, key).encode()
    except ValueError as exc:
        # NaN or an infinite number (``1e400``) in the body: json.loads reads them, the
        # canonical form (like the producer's json.dumps) refuses them, so nobody signed this.
        raise InvalidSignature(
            "bad_signature", f"bad signature (key {key_id!r}): the payload is not signable: {exc}"
        ) from None
    if not hmac.compare_digest(signature.encode(), expected):
        raise InvalidSignature(
            "bad_signature",
            f"bad signature (key {key_id!r}): the event was forged, or altered after it was signed",
        )
    return key


def _digest(envelope: Envelope, payload: Mapping[str, Any], key: SigningKey) -> str:
    message = signing_input(envelope, payload, key_id=key.key_id)
    return f"{SCHEME}={hmac.new(key.secret, message, hashlib.sha256).hexdigest()}"


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, ASCII escapes, one spelling per number (see :func:`_normalise`)."""
    return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _normalise(value: Any) -> Any:
    """Integral floats become exact ints: ``1e20``, ``1.0`` and ``-0.0`` were written so by the
    producer, jsonb gives them back as ``100000000000000000000``, ``1.0`` and ``0`` (read as
    int, float and int). Other floats stay floats: Python writes the shortest text that reads
    back as the same float, jsonb keeps that decimal exactly, so both sides print the same.
    ``int(Decimal(repr(f)))``, not ``int(f)``: ``1e300`` is 10**300 in jsonb, not the float's
    binary value.
    """
    if isinstance(value, float):
        return int(Decimal(repr(value))) if value.is_integer() else value
    if isinstance(value, dict):
        return {key: _normalise(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(item) for item in value]
    return value


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return "" if value is None else str(value).strip()
