"""A lock of a handler's own, for decisions that depend on events of several producers.

The framework's per-aggregate lock (the high-water mark's row) serialises only events that carry
a ``ce-sequence`` with the same ``(source, aggregate type, subject)``. Two events about one entity
from two producers, or events without a sequence (e.g. imported from django-outbox-pattern), can
be handled at the same moment by two workers, each missing the other's uncommitted rows. A
handler whose decision depends on both takes :func:`lock_for_transaction` on the entity first.
See docs/consumers.md ("Events of one entity from two producers").
"""

from django.db import connections


def lock_for_transaction(*, namespace: int, key: str, using: str) -> None:
    """Hold a PostgreSQL advisory lock on ``(namespace, key)`` until the current transaction on
    ``using`` ends; wait while another transaction holds it.

    ``namespace`` (a 32-bit integer, e.g. two ASCII letters of the service's name) keeps one
    service's locks apart from another's and from the framework's own advisory locks; ``key`` is
    hashed into the second half of the two-key form, so a hash collision only makes two entities
    wait for each other. Must be called inside a transaction (the handler's): outside one the
    lock would be released at once, silently serialising nothing.
    """
    connection = connections[using]
    if not connection.in_atomic_block:
        raise RuntimeError(f"lock_for_transaction({key!r}) must run inside a transaction")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [namespace, key])
