"""prune_outbox, setup_broker and the relay command's arguments."""

from datetime import timedelta
from io import StringIO

import amqp
import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from outbox.management.commands.prune_outbox import parse_age
from outbox.models import OutboxMessage
from outbox.partitioning import parse_partitions, partition_for
from outbox.recording import record_event
from outbox.topology import topology_contributor

from .helpers import broker_connection, make_payload, unique

pytestmark = pytest.mark.django_db


def make_rows(event_type, **states) -> dict[str, OutboxMessage]:
    """One row per keyword: name=(published_at, parked_at)."""
    rows = {}
    with transaction.atomic():
        for name, (published_at, parked_at) in states.items():
            row = record_event(event_type, aggregate_id=name, payload=make_payload(name))
            # A row occurs before it is published (prune walks occurred_at).
            occurred_at = min(t for t in (published_at, parked_at, timezone.now()) if t)
            OutboxMessage.objects.filter(id=row.id).update(
                published_at=published_at, parked_at=parked_at, occurred_at=occurred_at
            )
            rows[name] = row
    return rows


def test_prune_deletes_only_old_published_rows(event_type):
    now = timezone.now()
    old = now - timedelta(days=40)
    make_rows(
        event_type,
        old_published=(old, None),
        old_published_2=(old, None),
        recent_published=(now - timedelta(days=1), None),
        pending=(None, None),
        parked=(None, old),
    )
    OutboxMessage.objects.filter(aggregate_id__in=["pending", "parked"]).update(
        created_at=old, occurred_at=old, next_attempt_at=old
    )
    out = StringIO()

    call_command("prune_outbox", "--older-than", "30d", "--batch-size", "1", stdout=out)

    assert "deleted 2 published rows older than 30d" in out.getvalue()
    remaining = set(OutboxMessage.objects.values_list("aggregate_id", flat=True))
    assert remaining == {"recent_published", "pending", "parked"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
    ],
)
def test_prune_ages(text, expected):
    assert parse_age(text) == expected


def test_prune_refuses_a_bad_age():
    with pytest.raises(CommandError, match="not an age"):
        call_command("prune_outbox", "--older-than", "30 days")


def test_partitions_are_stable_and_parsed():
    assert partition_for("order", "o-1", 16) == partition_for("order", "o-1", 16)
    assert 0 <= partition_for("order", "o-1", 16) < 16
    assert parse_partitions("0-3,8, 10-11", 16) == [0, 1, 2, 3, 8, 10, 11]
    with pytest.raises(ValueError, match="outside"):
        parse_partitions("12-16", 16)
    with pytest.raises(CommandError, match="outside"):
        call_command("relay_outbox", "--once", "--partitions", "99")


def test_setup_broker_declares_exchanges_and_runs_contributors(make_event_type):
    # Given a registered event type whose exchange does not exist yet, and a contributor
    event_type = make_event_type(declare=False)
    queue_name = unique("test.setup")
    calls = []

    @topology_contributor
    def declare_test_queue(channel: amqp.Channel) -> None:
        calls.append(channel)
        channel.queue_declare(queue_name, durable=False, auto_delete=True)

    try:
        # When setup_broker runs twice (it is idempotent)
        out = StringIO()
        call_command("setup_broker", stdout=out)
        call_command("setup_broker", stdout=StringIO())

        # Then the exchange exists (a passive declare would fail otherwise), contributors ran
        connection = broker_connection()
        try:
            connection.channel().exchange_declare(event_type.exchange, "topic", passive=True)
        finally:
            connection.close()
        assert len(calls) == 2
        assert "declare_event_exchanges" in out.getvalue()
    finally:
        from outbox import topology

        topology._contributors.remove(declare_test_queue)
