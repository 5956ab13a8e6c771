"""Reads of the outbox for operators: finding rows by the ids people paste (the admin's search).

Every search here is an exact, case-sensitive ``=`` on an indexed column, so it stays a few index
probes however many published rows are retained. Django's ``=field`` search (``iexact``,
``UPPER(col) = UPPER(term)``) cannot use a B-tree index: on a log of millions of rows each
search was a sequential scan of the whole table (docs/outbox.md, "The admin").
"""

import contextlib
import uuid
from functools import reduce
from operator import or_

from django.db import connections
from django.db.models import Q, QuerySet
from django.utils.text import smart_split, unescape_string_literal

from outbox.models import OutboxMessage

# The aggregate types present, one probe of the unique (aggregate_type, aggregate_id, sequence)
# index per type: an emulated skip scan (PostgreSQL 15 has none), a handful of index descents
# instead of reading every entry.
AGGREGATE_TYPES_SQL = """
WITH RECURSIVE types(aggregate_type) AS (
    SELECT min(aggregate_type) FROM outbox_message
    UNION ALL
    SELECT (SELECT min(m.aggregate_type) FROM outbox_message m
            WHERE m.aggregate_type > types.aggregate_type)
    FROM types WHERE types.aggregate_type IS NOT NULL
)
SELECT aggregate_type FROM types WHERE aggregate_type IS NOT NULL
"""


def outbox_aggregate_types(*, using: str = "default") -> list[str]:
    """Every aggregate type that has rows in ``using``'s outbox, sorted (from the data, not the
    registry: rows of a type no longer registered are still found)."""
    with connections[using].cursor() as cursor:
        cursor.execute(AGGREGATE_TYPES_SQL)
        return [row[0] for row in cursor.fetchall()]


def outbox_search_terms(text: str) -> list[str]:
    """The ids in a search box's text: split on whitespace (surrounding whitespace is ignored),
    a quoted ``"..."`` or ``'...'`` kept as one term without its quotes, duplicates dropped."""
    terms = []
    for bit in smart_split(text):
        if bit[0] in "\"'" and bit[-1] == bit[0] and len(bit) > 1:
            bit = unescape_string_literal(bit)
        if bit and bit not in terms:
            terms.append(bit)
    return terms


def outbox_message_search(
    *, queryset: QuerySet[OutboxMessage], text: str
) -> QuerySet[OutboxMessage]:
    """Rows of ``queryset`` matching **any** of the ids in ``text`` (exactly, case-sensitively).

    A term matches a row whose aggregate id, correlation id or (when the term is a UUID) event
    id equals it, or, written ``TYPE:ID`` like the admin's *aggregate* column, the aggregate of
    that type and id. Terms are OR-ed, so pasting several ids lists all their rows. Causation ids
    are not searched: no index covers them (one would cost every producer's INSERT, measured in
    docs/outbox.md); the causing event is found by its event id, the events it caused by the
    saga's correlation id. An empty ``text`` returns ``queryset`` as it is.
    """
    terms = outbox_search_terms(text)
    if not terms:
        return queryset
    # The unique index's leading column is aggregate_type: naming every type present lets an
    # aggregate id alone be looked up through it, with no index of its own on aggregate_id.
    types = outbox_aggregate_types(using=queryset.db)
    return queryset.filter(reduce(or_, (_term_q(term, types) for term in terms)))


def _term_q(term: str, aggregate_types: list[str]) -> Q:
    q = Q(aggregate_type__in=aggregate_types, aggregate_id=term) | Q(correlation_id=term)
    kind, sep, ident = term.partition(":")
    if sep and kind and ident:
        q |= Q(aggregate_type=kind, aggregate_id=ident)
    with contextlib.suppress(ValueError):  # not a UUID: it cannot be an event id
        q |= Q(event_id=uuid.UUID(term))
    return q
