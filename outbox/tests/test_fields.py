"""The payload column: ``json``, stored as the producer wrote it, sent as stored."""

import pytest
from django.db import connection, transaction

from outbox.claiming import claim_batch
from outbox.models import OutboxMessage
from outbox.recording import record_event
from outbox.wire import encode_body

pytestmark = pytest.mark.django_db


def test_the_payload_is_stored_compact_in_its_own_key_order_and_sent_as_stored(event_type):
    # given an event whose payload has keys out of alphabetical order and non-ASCII text
    payload = {"total": "10.00", "order_id": "o-1", "note": "Größe ☕", "lines": []}
    with transaction.atomic():
        row = record_event(event_type, aggregate_id="a", payload=payload)

    # then the column is json, holding the producer's compact text
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_typeof(payload)::text, payload::text FROM outbox_message WHERE id = %s",
            [row.id],
        )
        column_type, text = cursor.fetchone()
    assert column_type == "json"
    assert text == '{"total":"10.00","order_id":"o-1","note":"Größe ☕","lines":[]}'
    # and the model gives the payload back as it was
    assert OutboxMessage.objects.get(pk=row.pk).payload == payload
    # and the relay's body is that very text
    (claimed,) = claim_batch(partitions=range(16), limit=10)
    assert encode_body(claimed) == text.encode()
