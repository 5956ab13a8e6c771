"""prune_events: only what is past retention, in bounded batches; the inbox outlives the replay."""

import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from outbox.consumer.checks import check_retention
from outbox.consumer.models import DeadLetter, InboxEntry
from outbox.consumer.pruning import describe, physical_databases, prune_events
from outbox.models import OutboxMessage
from outbox.recording import record_event
from outbox.registry import EventType, register, unregister
from outbox.retention import get_retention

# Every alias: in the test settings they all reach the test database (pruned once).
pytestmark = pytest.mark.django_db(databases="__all__")
NOW = timezone.now()
State = DeadLetter.State


@pytest.fixture(autouse=True)
def _retention(settings):
    """The documented defaults: 30 days of replay, the inbox 7 days more, dead letters 30."""
    settings.OUTBOX_RETENTION_DAYS = 30
    settings.OUTBOX_INBOX_RETENTION_DAYS = None
    settings.OUTBOX_DEAD_LETTER_RETENTION_DAYS = 30


@pytest.fixture
def event_type():
    name = f"prune-{uuid.uuid4().hex[:8]}"
    schema = {"type": "object"}
    registered = register(
        EventType(
            type=f"{name}.thing.happened",
            version=1,
            exchange="prune.test",
            aggregate_type="thing",
            schema=schema,
            description="A test event.",
        )
    )
    yield registered
    unregister(registered)


def outbox_rows(event_type, **ages) -> None:
    """One row per keyword: name=(days since published or None, days since parked or None)."""
    with transaction.atomic():
        for name, (published, parked) in ages.items():
            row = record_event(event_type, aggregate_id=name, payload={})
            OutboxMessage.objects.filter(id=row.id).update(
                published_at=None if published is None else NOW - timedelta(days=published),
                parked_at=None if parked is None else NOW - timedelta(days=parked),
                created_at=NOW - timedelta(days=100),
                occurred_at=NOW - timedelta(days=100),  # a row occurs before it is published
            )


def inbox_entries(service: str, *ages: float) -> None:
    for days in ages:
        moment = NOW - timedelta(days=days)
        InboxEntry.objects.create(
            service=service,
            event_id=uuid.uuid4(),
            event_type="t",
            subject=f"{days}",
            received_at=moment,
            handled_at=moment,
        )


def dead_letter(name: str, state: str, resolved_days_ago: float | None) -> DeadLetter:
    return DeadLetter.objects.create(
        service="svc",
        event_id=uuid.uuid4(),
        subject=name,
        origin=DeadLetter.Origin.CONSUMER,
        reason="bug",
        attempts=1,
        body=b"{}",
        fingerprint=uuid.uuid4().hex,
        dead_at=NOW - timedelta(days=100),
        state=state,
        resolved_at=None if resolved_days_ago is None else NOW - timedelta(days=resolved_days_ago),
    )


def remaining_outbox() -> set[str]:
    return set(OutboxMessage.objects.values_list("aggregate_id", flat=True))


def test_prune_deletes_only_what_is_old_enough_in_batches(event_type):
    # given outbox rows, inbox entries and dead letters on both sides of their retention
    outbox_rows(
        event_type,
        **{f"old-{n}": (31, None) for n in range(5)},
        recent=(29, None),
        pending=(None, None),
        parked=(None, 90),
    )
    inbox_entries("a", 38, 38, 40, 36, 1)  # 36 days: past the replay window, inside the margin
    inbox_entries("b", 50, 2)
    dead_letter("discarded-old", State.DISCARDED, 31)
    dead_letter("requeued-recent", State.REQUEUED, 10)
    dead_letter("open-ancient", State.OPEN, None)
    # when pruned in batches of 2
    report = prune_events(batch_size=2, max_batches=100, now=NOW)
    # then only the old published rows, the entries past the inbox retention and the old
    # resolved dead letter are gone — never a pending or parked row, never an open dead letter
    (database,) = report.databases
    assert (database.outbox.rows, database.outbox.batches) == (5, 3)
    assert remaining_outbox() == {"recent", "pending", "parked"}
    assert database.inbox.rows == 4
    assert sorted(InboxEntry.objects.values_list("service", "subject")) == [
        ("a", "1"),
        ("a", "36"),
        ("b", "2"),
    ]
    assert database.dead_letters is not None and database.dead_letters.rows == 1
    assert set(DeadLetter.objects.values_list("subject", flat=True)) == {
        "requeued-recent",
        "open-ancient",
    }
    assert report.complete
    assert report.inbox_before == NOW - timedelta(days=37)


def test_a_run_is_bounded_and_the_next_one_continues(event_type):
    # given five old published rows
    outbox_rows(event_type, **{f"old-{n}": (40, None) for n in range(5)})
    # when a run may delete at most one batch of 2
    first = prune_events(batch_size=2, max_batches=1, now=NOW)
    # then it stops there and says so
    assert first.databases[0].outbox.rows == 2
    assert not first.complete
    assert "the next run continues" in describe(first)[0]
    assert len(remaining_outbox()) == 3
    # and the following runs finish the job
    prune_events(batch_size=2, max_batches=1, now=NOW)
    last = prune_events(batch_size=2, max_batches=1, now=NOW)
    assert last.databases[0].outbox.rows == 1 and last.complete
    assert remaining_outbox() == set()


def test_command_prints_a_summary_and_dry_run_deletes_nothing(event_type):
    outbox_rows(event_type, old=(31, None), recent=(1, None))
    inbox_entries("a", 40)
    out = StringIO()
    call_command("prune_events", "--dry-run", stdout=out)
    assert "would delete 1 outbox rows published before" in out.getvalue()
    assert "1 inbox entries handled before" in out.getvalue()
    assert remaining_outbox() == {"old", "recent"}
    out = StringIO()
    call_command("prune_events", "--batch-size", "10", stdout=out)
    assert "deleted 1 outbox rows" in out.getvalue()
    assert remaining_outbox() == {"recent"}
    assert not InboxEntry.objects.exists()


def test_every_alias_of_one_database_is_pruned_once():
    # the test settings point every service alias at the main database
    assert physical_databases(["default", "payments", "shipping"]) == [
        ["default", "payments", "shipping"]
    ]


def test_the_inbox_retention_follows_the_replay_window(settings):
    # given a longer replay window and no inbox setting
    settings.OUTBOX_RETENTION_DAYS = 60
    retention = get_retention()
    # then the inbox keeps entries 7 days longer than events can be replayed
    assert retention.outbox == timedelta(days=60)
    assert retention.inbox == timedelta(days=67)
    inbox_entries("a", 40, 66, 68)
    prune_events(now=NOW)
    assert sorted(InboxEntry.objects.values_list("subject", flat=True)) == ["40", "66"]


@pytest.mark.parametrize("inbox_days", [10, 30, 30.5])
def test_an_inbox_retention_shorter_than_the_replay_window_is_refused(settings, inbox_days):
    # given an inbox that would forget events still replayable (30 days + 1 day margin)
    settings.OUTBOX_INBOX_RETENTION_DAYS = inbox_days
    inbox_entries("a", 20)
    # then the settings are refused with a clear message, by the check, the command and the API
    with pytest.raises(ImproperlyConfigured, match="shorter than the replay window") as error:
        get_retention()
    assert "Set it to at least 31" in str(error.value)
    (message,) = check_retention()
    assert message.id == "outbox_consumer.E001"
    with pytest.raises(CommandError, match="a replay would apply them twice"):
        call_command("prune_events")
    # and nothing was deleted
    assert InboxEntry.objects.count() == 1


def test_an_inbox_retention_of_at_least_the_window_plus_a_day_is_accepted(settings):
    settings.OUTBOX_INBOX_RETENTION_DAYS = 31
    assert get_retention().inbox == timedelta(days=31)
    assert check_retention() == []


@pytest.mark.parametrize(
    ("name", "value"), [("OUTBOX_RETENTION_DAYS", 0), ("OUTBOX_DEAD_LETTER_RETENTION_DAYS", "x")]
)
def test_nonsense_retention_settings_are_refused(settings, name, value):
    setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured, match=name):
        get_retention()


def test_bad_command_arguments_are_refused():
    with pytest.raises(CommandError, match="--batch-size must be at least 1"):
        call_command("prune_events", "--batch-size", "0")
    with pytest.raises(CommandError, match="unknown database alias"):
        call_command("prune_events", "--database", "nope")
