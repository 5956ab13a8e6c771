"""resign_outbox: stored rows signed with a retired key are signed again with the current one,
checked first, in bounded batches, changing nothing but the two signature headers."""

import json
import re
from io import StringIO

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from outbox.claiming import MARK_PUBLISHED_SQL, claim_batch, mark_published
from outbox.consumer.events import parse_event
from outbox.consumer.verification import verify_event
from outbox.models import OutboxMessage
from outbox.recording import record_event
from outbox.signing import KEY_ID_HEADER, SIGNATURE_HEADER, InvalidSignature, parse_keyring
from outbox.wire import to_amqp

from .helpers import database_url, make_payload

pytestmark = pytest.mark.django_db

SOURCE = "test.service"
OTHER = "other.service"
OLD = f"{SOURCE}:ts-1:" + "s" * 40
NEW = f"{SOURCE}:ts-2:" + "t" * 40
OTHER_KEY = f"{OTHER}:os-1:" + "o" * 40
BEFORE_ROTATION = f"{OLD},{OTHER_KEY}"
DURING_ROTATION = f"{NEW},{OLD},{OTHER_KEY}"  # rotation step 2: the new key signs
AFTER_ROTATION = f"{NEW},{OTHER_KEY}"  # step 3: the old key is gone


@pytest.fixture(autouse=True)
def _keys(settings):
    settings.OUTBOX_SOURCE = SOURCE
    settings.OUTBOX_SIGNING_KEYS = BEFORE_ROTATION


def record(event_type, *names: str, source: str = SOURCE) -> list[int]:
    """Record one event per name (the aggregate id), as ``source``; their row ids."""
    # as another producing service (other.service): its own key signs its rows
    with transaction.atomic(), override_settings(OUTBOX_SOURCE=source):
        return [
            record_event(event_type, aggregate_id=name, payload=make_payload(name)).id
            for name in names
        ]


def columns() -> dict[int, dict]:
    """Every column of every row, as stored (the payload as its text), by id."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT *, payload::text AS payload_text FROM outbox_message ORDER BY id")
        names = [column.name for column in cursor.description]
        rows = {values[0]: dict(zip(names, values, strict=True)) for values in cursor.fetchall()}
    for row in rows.values():
        row["headers"] = json.loads(row["headers"])  # jsonb comes as its text through Django
    return rows


def queue() -> list[tuple]:
    """The relay's queue, every column."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM outbox_pending ORDER BY id")
        return cursor.fetchall()


def without_signature(row: dict) -> dict:
    """A row's columns with the two signature headers left out of its headers."""
    headers = {
        k: v for k, v in row["headers"].items() if k not in (SIGNATURE_HEADER, KEY_ID_HEADER)
    }
    return {**row, "headers": headers}


def key_ids() -> dict[int, str]:
    return {row_id: row["headers"][KEY_ID_HEADER] for row_id, row in columns().items()}


def consumer_check(row_id: int, keys: str) -> str:
    """The row as the relay puts it on the wire, checked by the consumer's own verification
    with only ``keys`` configured; the key id that vouched for it."""
    message = to_amqp(OutboxMessage.objects.get(id=row_id))
    properties = dict(message.properties)
    event = parse_event(message.body, properties)
    return verify_event(event, properties, keyring=parse_keyring(keys)).key_id


def resign(*args: str) -> str:
    out = StringIO()
    call_command("resign_outbox", *args, stdout=out)
    return out.getvalue()


def set_states(*, published: list[int] = (), parked: list[int] = ()) -> None:
    now = timezone.now()
    OutboxMessage.objects.filter(id__in=published).update(published_at=now, attempts=1)
    OutboxMessage.objects.filter(id__in=parked).update(parked_at=now, attempts=3, last_error="x")


def test_rows_signed_again_verify_with_only_the_new_key_and_nothing_else_changes(
    event_type, settings
):
    # given rows of every state signed with the old key
    published, parked, pending = record(event_type, "o-1", "o-2", "o-3")
    set_states(published=[published], parked=[parked])
    # which stop verifying once the old key is removed
    with pytest.raises(InvalidSignature, match="unknown key id 'ts-1'"):
        consumer_check(published, AFTER_ROTATION)
    before, queue_before = columns(), queue()
    # when the key is rotated (step 2) and the rows are signed again
    settings.OUTBOX_SIGNING_KEYS = DURING_ROTATION
    out = resign("--key-id", "ts-1")
    # then every one of them verifies, at the consumer, with only the new key configured
    assert "re-signed 3 rows of test.service signed with 'ts-1', with 'ts-2'" in out
    for row_id in (published, parked, pending):
        assert consumer_check(row_id, AFTER_ROTATION) == "ts-2"
    # and nothing but the two signature headers changed: payload text, state, attempts, times...
    after = columns()
    for row_id in (published, parked, pending):
        assert after[row_id]["headers"][KEY_ID_HEADER] == "ts-2"
        assert (
            after[row_id]["headers"][SIGNATURE_HEADER]
            != before[row_id]["headers"][SIGNATURE_HEADER]
        )
        assert without_signature(after[row_id]) == without_signature(before[row_id])
    # and the relay's queue is as it was (an UPDATE queues nothing: the trigger is on INSERT)
    assert queue() == queue_before


def test_rows_of_other_keys_and_sources_are_left_untouched(event_type, settings):
    # given rows of the source signed with the old key, a row of another service (its own key),
    # and a row the source already signed with the new key
    mine = record(event_type, "o-1", "o-2")
    theirs = record(event_type, "x-1", source=OTHER)
    settings.OUTBOX_SIGNING_KEYS = DURING_ROTATION
    already_new = record(event_type, "o-3")
    before = columns()
    # when the old key's rows are signed again
    out = resign("--key-id", "ts-1", "--source", SOURCE)
    # then only those changed; the others are exactly as they were, headers included
    assert "re-signed 2 rows" in out
    after = columns()
    assert {row_id: after[row_id]["headers"][KEY_ID_HEADER] for row_id in mine} == {
        mine[0]: "ts-2",
        mine[1]: "ts-2",
    }
    for row_id in theirs + already_new:
        assert after[row_id] == before[row_id]


def test_a_dry_run_counts_and_changes_nothing(event_type, settings):
    record(event_type, "o-1", "o-2", "o-3")
    record(event_type, "x-1", source=OTHER)
    settings.OUTBOX_SIGNING_KEYS = DURING_ROTATION
    before = columns()

    out = resign("--key-id", "ts-1", "--dry-run")

    assert "resign_outbox (dry run): would re-sign 3 rows" in out
    assert "scanned 4 rows in 1 batches" in out
    assert columns() == before


def test_batches_smaller_than_the_table_cover_every_row_once_and_a_second_run_finds_none(
    event_type, settings
):
    # given 7 rows, 5 of them signed with the old key, interleaved with another service's
    ids = record(event_type, "o-1", "o-2")
    ids += record(event_type, "x-1", source=OTHER)
    ids += record(event_type, "o-3", "o-4")
    ids += record(event_type, "x-2", source=OTHER)
    ids += record(event_type, "o-5")
    settings.OUTBOX_SIGNING_KEYS = DURING_ROTATION
    # when they are signed again 3 rows at a time, with a progress line per batch
    out = resign("--key-id", "ts-1", "--batch-size", "3", "--verbosity", "2")
    # then 3 batches read 3 + 3 + 1 rows, and all 5 were signed again
    batches = re.findall(r"batch (\d+): scanned (\d+) rows \(ids up to (\d+) of (\d+)\)", out)
    assert [(int(n), int(scanned)) for n, scanned, _, _ in batches] == [(1, 3), (2, 6), (3, 7)]
    assert [int(end) for _, _, end, _ in batches] == [ids[2], ids[5], ids[6]]
    assert "re-signed 5 rows" in out and "scanned 7 rows in 3 batches" in out
    assert sorted(key_ids().values()) == ["os-1", "os-1", "ts-2", "ts-2", "ts-2", "ts-2", "ts-2"]
    # and a second run finds nothing left to do (interrupting and running again is safe)
    assert "re-signed 0 rows" in resign("--key-id", "ts-1", "--batch-size", "3")


def test_a_row_altered_since_it_was_signed_is_not_signed_again(event_type, settings):
    # given two rows signed with the old key, one of them altered in the database afterwards
    kept, altered = record(event_type, "o-1", "o-2")
    OutboxMessage.objects.filter(id=altered).update(payload=make_payload("o-2", total="0.01"))
    settings.OUTBOX_SIGNING_KEYS = DURING_ROTATION
    # when the rows are signed again
    with pytest.raises(CommandError, match=f"(?s)1 rows do not verify with 'ts-1'.*row {altered} "):
        resign("--key-id", "ts-1")
    # then the good one was, and the altered one still carries its old (bad) signature: the new
    # key never vouches for it
    assert key_ids() == {kept: "ts-2", altered: "ts-1"}
    with pytest.raises(InvalidSignature, match="altered after it was signed"):
        consumer_check(altered, DURING_ROTATION)


@pytest.mark.parametrize(
    ("keys", "args", "message"),
    [
        # rotation step 2 not done: the old key still signs
        (f"{OLD},{NEW},{OTHER_KEY}", [], "nothing to do: 'ts-1' is still the key"),
        (BEFORE_ROTATION, [], "nothing to do: 'ts-1' is still the key"),
        # the old key is gone from this process: the rows' signatures cannot be checked
        (AFTER_ROTATION, [], "key id 'ts-1' is not in OUTBOX_SIGNING_KEYS"),
        # a source with no signing key at all
        (DURING_ROTATION, ["--source", "nobody.service"], "no signing key for source"),
        # the old key is another source's
        (DURING_ROTATION, ["--source", OTHER], "'ts-1' belongs to 'test.service', not to"),
        (DURING_ROTATION, ["--batch-size", "0"], "--batch-size must be at least 1"),
    ],
    ids=[
        "old-key-first",
        "only-old-key",
        "old-key-gone",
        "source-without-key",
        "other-source",
        "batch-0",
    ],
)
def test_refuses_when_there_is_nothing_to_sign_with(event_type, settings, keys, args, message):
    record(event_type, "o-1")
    before = columns()
    settings.OUTBOX_SIGNING_KEYS = keys

    with pytest.raises(CommandError, match=re.escape(message)):
        resign("--key-id", "ts-1", *args)

    assert columns() == before


def test_a_pending_row_sent_while_it_is_signed_again_ends_published_and_re_signed(
    event_type, settings
):
    # given a pending row that a relay has claimed and is sending (its copy: the old signature)
    (row_id,) = record(event_type, "o-1")
    (claimed,) = claim_batch(partitions=range(settings.OUTBOX_PARTITIONS), limit=10)
    settings.OUTBOX_SIGNING_KEYS = DURING_ROTATION
    # when the row is signed again before the relay marks it published
    resign("--key-id", "ts-1")
    assert mark_published([claimed]) == 1
    # then the row is published (the mark did not undo the new signature, nor the reverse)
    row = OutboxMessage.objects.get(id=row_id)
    assert row.state == OutboxMessage.State.PUBLISHED
    assert consumer_check(row_id, AFTER_ROTATION) == "ts-2"
    # and the copy that was sent verifies wherever the old key is still listed
    message = to_amqp(claimed)
    properties = dict(message.properties)
    event = parse_event(message.body, properties)
    assert verify_event(event, properties, keyring=parse_keyring(DURING_ROTATION)).key_id == "ts-1"


@pytest.mark.django_db(transaction=True)
def test_a_row_the_relays_mark_holds_is_skipped_not_waited_for_and_the_next_run_signs_it(
    event_type, settings
):
    # given two pending rows claimed by a relay, which is marking one of them right now (its
    # mark's transaction holds the row's lock)
    busy, free = record(event_type, "o-1", "o-2")
    partitions = range(settings.OUTBOX_PARTITIONS)
    claimed = {row.id: row for row in claim_batch(partitions=partitions, limit=10)}
    settings.OUTBOX_SIGNING_KEYS = DURING_ROTATION
    with psycopg.connect(database_url()) as relay:
        relay.execute(MARK_PUBLISHED_SQL, {"ids": [busy]})

        # when resign_outbox runs meanwhile, it does not wait for that lock (were it to wait,
        # lock_timeout fails the test instead of hanging it): it signs the other row and counts
        # this one as busy, for the next run
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")
        try:
            out = resign("--key-id", "ts-1")
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
        assert "re-signed 1 rows" in out and "1 rows changed or busy" in out
        assert key_ids() == {busy: "ts-1", free: "ts-2"}
        relay.commit()

    # then the mark went through, and the next run signs the row it skipped
    assert mark_published([claimed[free]]) == 1
    assert "re-signed 1 rows" in resign("--key-id", "ts-1")
    assert key_ids() == {busy: "ts-2", free: "ts-2"}
    states = set(OutboxMessage.objects.values_list("published_at", flat=True))
    assert None not in states
