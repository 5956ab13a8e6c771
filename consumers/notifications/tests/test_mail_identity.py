"""Every copy of the mail about one event carries the same Message-ID (made from the event id)."""

import pytest
from django.core import mail
from django.db import transaction

from consumers.notifications.handlers import service
from consumers.notifications.models import Notification
from consumers.notifications.services import DATABASE, message_id_for, notification_send
from outbox.consumer.testing import handle

from .test_cancelled_orders import cancelled

pytestmark = pytest.mark.django_db(databases=["default", "notifications"])


class CommitFailed(Exception):
    """Stands for the commit failing after the mail went out (e.g. PostgreSQL restarting)."""


def test_a_mail_sent_again_after_a_failed_commit_keeps_its_message_id():
    event = cancelled()
    # given the mail went out but its transaction did not commit
    with pytest.raises(CommitFailed), transaction.atomic(using=DATABASE):
        notification_send(event_type=event.type, event_id=str(event.id), payload=event.payload)
        raise CommitFailed
    assert not Notification.objects.exists()
    # when the redelivered event is handled
    assert handle(service, event) == [True]
    # then the customer got two copies of one mail: the same Message-ID, from the event id
    ids = [message.extra_headers["Message-ID"] for message in mail.outbox]
    assert ids == [message_id_for(str(event.id))] * 2
    assert str(event.id) in ids[0]
    assert Notification.objects.count() == 1


def test_mails_about_different_events_have_different_message_ids():
    first, second = cancelled(), cancelled()
    handle(service, first)
    Notification.objects.all().delete()  # let the same step be mailed again for a new event
    handle(service, second)
    assert len({message.extra_headers["Message-ID"] for message in mail.outbox}) == 2
