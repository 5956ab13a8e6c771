"""A handler's own lock on an entity: held until its transaction ends, refused outside one."""

import psycopg
import pytest
from django.db import connection, transaction

from outbox.consumer.locking import lock_for_transaction
from outbox.consumer.tests.conftest import consumer_db

pytestmark = consumer_db

NAMESPACE = 0x7465  # "te"


def _dsn() -> str:
    settings = connection.settings_dict
    return (
        f"dbname={settings['NAME']} host={settings['HOST'] or '127.0.0.1'} user={settings['USER']}"
    )


def _free_elsewhere(key: str) -> bool:
    """Whether another session can take the lock on ``key`` at once (and lets it go again)."""
    with psycopg.connect(_dsn(), autocommit=False) as other:
        row = other.execute(
            "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", [NAMESPACE, key]
        ).fetchone()
        return bool(row and row[0])


def test_the_lock_is_held_until_the_transaction_ends():
    with transaction.atomic():
        lock_for_transaction(namespace=NAMESPACE, key="42", using="default")
        assert not _free_elsewhere("42")
        assert _free_elsewhere("43")  # another entity is not held up
    assert _free_elsewhere("42")


def test_outside_a_transaction_the_lock_is_refused():
    # it would be released at once, serialising nothing
    with pytest.raises(RuntimeError, match="inside a transaction"):
        lock_for_transaction(namespace=NAMESPACE, key="42", using="default")
