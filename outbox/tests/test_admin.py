"""The outbox admin: readable rows, filters by state and type, and "retry now"."""

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from outbox.models import OutboxMessage
from outbox.recording import record_event

from .helpers import make_payload

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:outbox_outboxmessage_changelist"


@pytest.fixture
def rows(event_type) -> dict[str, OutboxMessage]:
    with transaction.atomic():
        made = {
            name: record_event(event_type, aggregate_id=name, payload=make_payload(name))
            for name in ("pending", "published", "parked")
        }
    now = timezone.now()
    OutboxMessage.objects.filter(id=made["published"].id).update(published_at=now)
    OutboxMessage.objects.filter(id=made["parked"].id).update(
        parked_at=now, attempts=10, last_error="unroutable: NO_ROUTE"
    )
    return made


@pytest.mark.parametrize("state", ["pending", "published", "parked"])
def test_changelist_filters_by_state(admin_client, rows, state):
    response = admin_client.get(reverse(CHANGELIST), {"state": state})

    assert response.status_code == 200
    shown = {row.aggregate_id for row in response.context["cl"].result_list}
    assert shown == {state}


def test_changelist_filters_by_type(admin_client, rows, event_type):
    response = admin_client.get(reverse(CHANGELIST), {"type": event_type.type})

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 3
    assert event_type.type in response.content.decode()


def test_detail_shows_payload_and_headers_read_only(admin_client, rows):
    row = rows["parked"]
    url = reverse("admin:outbox_outboxmessage_change", args=[row.id])

    response = admin_client.get(url)

    html = response.content.decode()
    assert response.status_code == 200
    assert "&quot;order_id&quot;: &quot;parked&quot;" in html  # pretty JSON, escaped
    assert "unroutable: NO_ROUTE" in html
    assert 'name="payload"' not in html  # no editable field


def test_retry_now_unparks_only_parked_rows(admin_client, rows):
    selected = [rows["parked"].id, rows["published"].id]

    response = admin_client.post(
        reverse(CHANGELIST), {"action": "retry_now", "_selected_action": selected}, follow=True
    )

    assert response.status_code == 200
    assert "1 parked message(s) queued" in response.content.decode()
    parked, published = (OutboxMessage.objects.get(id=i) for i in selected)
    assert parked.state == OutboxMessage.State.PENDING
    assert parked.attempts == 0 and parked.last_error == "unroutable: NO_ROUTE"
    assert published.state == OutboxMessage.State.PUBLISHED
