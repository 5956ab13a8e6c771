"""outbox.signing: the key format, the canonical form, and sign/verify (no database, no broker)."""

import dataclasses
import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from outbox.signing import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    Envelope,
    InvalidSignature,
    SigningConfigError,
    canonical_json,
    parse_keyring,
    sign,
    verify,
)

MONO_1 = "shop.monolith:mono-1:" + "a" * 40
MONO_2 = "shop.monolith:mono-2:" + "b" * 40
PAY_1 = "shop.payments:pay-1:" + "c" * 40
PAYLOAD = {"order_id": "o-1", "total": "10.00", "lines": [{"qty": 2, "price": 4.5}]}


def envelope(**changes) -> Envelope:
    base = Envelope(
        id=str(uuid.UUID(int=7)),
        source="shop.monolith",
        type="orders.order.placed",
        specversion="1.0",
        dataversion=1,
        time=datetime(2026, 11, 27, 3, 0, 0, 123456, tzinfo=UTC),
        subject="o-1",
        aggregatetype="order",
        sequence=3,
        correlationid="corr-1",
        causationid=None,
        datacontenttype="application/json",
    )
    return dataclasses.replace(base, **changes)


# --- keys --------------------------------------------------------------------------------------


def test_keys_parse_and_the_first_key_of_a_source_signs():
    keyring = parse_keyring(f"{MONO_2}, {PAY_1}\n{MONO_1}")
    assert keyring.current("shop.monolith").key_id == "mono-2"
    assert keyring.current("shop.payments").key_id == "pay-1"
    assert keyring.by_id("mono-1").source == "shop.monolith"
    assert keyring.by_id("nope") is None
    assert keyring.sources == {"shop.monolith", "shop.payments"}
    # the secret never shows in a repr (logs, tracebacks)
    assert "a" * 40 not in repr(keyring)


def test_a_list_of_entries_is_accepted_too():
    assert parse_keyring([MONO_1, PAY_1]).current("shop.payments").key_id == "pay-1"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("shop.monolith:mono-1", "an entry is not"),
        ("shop.monolith::" + "a" * 40, "an entry is not"),
        ("shop.monolith:mono 1:" + "a" * 40, "an entry is not"),  # a space splits the entry
        ("shop.monolith:mono/1:" + "a" * 40, "a key id of source 'shop.monolith'"),
        ("shop.monolith:mono-1:short", "shorter than 32"),
        ("shop.monolith:" + "a" * 40 + ":mono-1", "shorter than 32"),  # id and secret swapped
        (f"{MONO_1},shop.payments:mono-1:{'d' * 40}", "listed twice"),
    ],
)
def test_malformed_keys_are_refused_without_echoing_the_secret(spec, message):
    with pytest.raises(SigningConfigError, match=message) as error:
        parse_keyring(spec)
    assert "a" * 40 not in str(error.value)


def test_a_source_without_key_cannot_sign():
    with pytest.raises(
        SigningConfigError, match=re.escape("no signing key for source 'shop.shipping'")
    ):
        parse_keyring(MONO_1).current("shop.shipping")


# --- canonical form ----------------------------------------------------------------------------


def test_the_canonical_form_ignores_key_order_spacing_and_number_spelling():
    # what the producer had, and what PostgreSQL's jsonb text gives back to the consumer
    recorded = {"b": 1e20, "a": [1.5e-07, 2.50, 0.1, -0.0, 1.0, 1e300], "c": "é\n"}
    from_jsonb = json.loads(
        '{"a": [0.00000015, 2.5, 0.1, 0.0, 1.0, 1' + "0" * 300 + "], "
        '"b": 100000000000000000000, "c": "é\\n"}'
    )
    assert canonical_json(recorded) == canonical_json(from_jsonb)
    assert canonical_json(recorded) == (
        '{"a":[1.5e-07,2.5,0.1,0,1,1' + "0" * 300 + '],"b":100000000000000000000,"c":"\\u00e9\\n"}'
    )


def test_the_canonical_form_keeps_what_matters_apart():
    assert canonical_json({"a": 1}) != canonical_json({"a": "1"})  # number vs string
    assert canonical_json({"a": True}) != canonical_json({"a": 1})
    assert canonical_json({"a": None}) != canonical_json({})
    # no rounding: two integers that differ in their 30th digit stay different
    assert canonical_json(10**29 + 1) != canonical_json(10**29 + 2)
    with pytest.raises(ValueError):
        canonical_json(float("nan"))


# --- sign and verify ---------------------------------------------------------------------------


def test_a_signed_event_verifies_with_the_same_keys():
    keyring = parse_keyring(f"{MONO_1},{PAY_1}")
    headers = sign(envelope(), PAYLOAD, keyring.current("shop.monolith"))
    assert headers[KEY_ID_HEADER] == "mono-1"
    assert headers[SIGNATURE_HEADER].startswith("v1=")
    assert verify(envelope(), PAYLOAD, headers, keyring=keyring).key_id == "mono-1"


def test_the_same_time_in_another_zone_is_the_same_envelope():
    keyring = parse_keyring(MONO_1)
    headers = sign(envelope(), PAYLOAD, keyring.current("shop.monolith"))
    local = envelope().time.astimezone(timezone(timedelta(hours=2)))
    assert verify(envelope(time=local), PAYLOAD, headers, keyring=keyring)


@pytest.mark.parametrize(
    "changes",
    [
        {"id": str(uuid.UUID(int=8))},
        {"type": "orders.order.cancelled"},
        {"dataversion": 2},
        {"time": datetime(2026, 11, 27, 3, 0, 0, 123457, tzinfo=UTC)},
        {"subject": "o-2"},
        {"aggregatetype": "cart"},
        {"sequence": 4},
        {"sequence": None},
        {"correlationid": "corr-2"},
        {"causationid": "someone"},
        {"specversion": "1.1"},
        {"datacontenttype": "text/plain"},
    ],
)
def test_any_altered_envelope_attribute_fails(changes):
    keyring = parse_keyring(MONO_1)
    headers = sign(envelope(), PAYLOAD, keyring.current("shop.monolith"))
    with pytest.raises(InvalidSignature, match="bad signature"):
        verify(envelope(**changes), PAYLOAD, headers, keyring=keyring)


def test_an_altered_payload_fails():
    keyring = parse_keyring(MONO_1)
    headers = sign(envelope(), PAYLOAD, keyring.current("shop.monolith"))
    altered = {**PAYLOAD, "total": "0.01"}
    with pytest.raises(InvalidSignature, match="forged, or altered"):
        verify(envelope(), altered, headers, keyring=keyring)


def test_unsigned_unknown_key_and_half_signed_events_fail_with_their_reason():
    keyring = parse_keyring(MONO_1)
    headers = sign(envelope(), PAYLOAD, keyring.current("shop.monolith"))
    with pytest.raises(InvalidSignature, match="unsigned event"):
        verify(envelope(), PAYLOAD, {}, keyring=keyring)
    with pytest.raises(InvalidSignature, match="must both be present"):
        verify(envelope(), PAYLOAD, {SIGNATURE_HEADER: headers[SIGNATURE_HEADER]}, keyring=keyring)
    unknown = {**headers, KEY_ID_HEADER: "mono-9"}
    with pytest.raises(InvalidSignature, match="unknown key id 'mono-9'"):
        verify(envelope(), PAYLOAD, unknown, keyring=keyring)
    other_scheme = {**headers, SIGNATURE_HEADER: "v0=" + headers[SIGNATURE_HEADER][3:]}
    with pytest.raises(InvalidSignature, match="unsupported signature scheme"):
        verify(envelope(), PAYLOAD, other_scheme, keyring=keyring)


def test_a_signature_that_is_not_hex_fails_as_a_bad_signature():
    # hmac.compare_digest refuses non-ASCII str: the check must still end in InvalidSignature
    keyring = parse_keyring(MONO_1)
    headers = sign(envelope(), PAYLOAD, keyring.current("shop.monolith"))
    garbled = {**headers, SIGNATURE_HEADER: "v1=" + "é" * 64}
    with pytest.raises(InvalidSignature, match="bad signature"):
        verify(envelope(), PAYLOAD, garbled, keyring=keyring)


@pytest.mark.parametrize("number", [float("nan"), float("inf")], ids=["NaN", "1e400"])
def test_a_payload_with_a_number_json_cannot_carry_fails_as_a_bad_signature(number):
    # json.loads reads NaN and 1e400 (inf) from a body; no producer can have signed them
    keyring = parse_keyring(MONO_1)
    headers = sign(envelope(), PAYLOAD, keyring.current("shop.monolith"))
    with pytest.raises(InvalidSignature, match="the payload is not signable"):
        verify(envelope(), {**PAYLOAD, "total": number}, headers, keyring=keyring)


def test_a_signature_from_another_key_of_the_same_source_fails():
    # the key id is part of what is signed: relabelling a signature does not help either
    keyring = parse_keyring(f"{MONO_1},{MONO_2}")
    headers = sign(envelope(), PAYLOAD, keyring.by_id("mono-2"))
    relabelled = {**headers, KEY_ID_HEADER: "mono-1"}
    with pytest.raises(InvalidSignature, match="bad signature"):
        verify(envelope(), PAYLOAD, relabelled, keyring=keyring)


def test_a_key_cannot_vouch_for_another_source():
    keyring = parse_keyring(f"{MONO_1},{PAY_1}")
    # payments signs an event that claims to come from the monolith
    claimed = envelope(source="shop.payments")
    headers = sign(claimed, PAYLOAD, keyring.by_id("pay-1"))
    with pytest.raises(InvalidSignature, match="source mismatch: key 'pay-1' belongs to"):
        verify(envelope(), PAYLOAD, headers, keyring=keyring)
    # and the producer side refuses to sign with a key of another source
    with pytest.raises(SigningConfigError, match=re.escape("belongs to 'shop.payments'")):
        sign(envelope(), PAYLOAD, keyring.by_id("pay-1"))


def test_rotation_old_key_verifies_while_listed_and_fails_once_removed():
    old = parse_keyring(MONO_1)
    signed_with_old = sign(envelope(), PAYLOAD, old.current("shop.monolith"))
    # during the window: new key first (it signs), old key still listed (it verifies)
    window = parse_keyring(f"{MONO_2},{MONO_1}")
    assert window.current("shop.monolith").key_id == "mono-2"
    assert verify(envelope(), PAYLOAD, signed_with_old, keyring=window).key_id == "mono-1"
    # after the window
    with pytest.raises(InvalidSignature, match="unknown key id 'mono-1'"):
        verify(envelope(), PAYLOAD, signed_with_old, keyring=parse_keyring(MONO_2))
