"""Benchmark events: an ``orders.order.placed``-sized payload, and fast bulk loading of rows.

The rows are built in memory as unsaved ``OutboxMessage`` objects, so the raw-publish baseline
sends exactly the bytes the relay will send (``outbox.wire.to_amqp`` of the same rows), and
``COPY`` loads them into the table in a second or two.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import psycopg

BENCH_TYPE = "bench.order.placed"
BENCH_SOURCE = "fitness.bench"
AGGREGATE_TYPE = "bench_order"

COPY_COLUMNS = (
    "event_id, source, type, schema_version, aggregate_type, aggregate_id, sequence, "
    "correlation_id, causation_id, occurred_at, headers, payload, exchange, routing_key, "
    "partition, last_error"
)


def order_payload(n: int) -> dict:
    """A payload shaped and sized like the shop's ``orders.order.placed`` (two lines)."""
    return {
        "order_id": n,
        "customer": {"id": 1000 + n % 977, "email": f"runner{n % 977}@example.com", "name": "Ada"},
        "lines": [
            {
                "product_id": 7,
                "sku": "YOGA-MAT-PRO",
                "name": "Yoga mat, pro, 6 mm",
                "unit_price": "49.90",
                "quantity": 1,
            },
            {
                "product_id": 12,
                "sku": "KETTLE-16",
                "name": "Kettlebell 16 kg",
                "unit_price": "39.00",
                "quantity": 2,
            },
        ],
        "subtotal": "127.90",
        "delivery_cost": "4.90",
        "total": "132.80",
        "currency": "EUR",
        "address": {
            "name": "Ada Lovelace",
            "street": "12 Marathon Road",
            "city": "Springfield",
            "zip": "12345",
            "country": "DE",
        },
        "delivery": "standard",
        "payment": {
            "token": f"tok_{uuid.UUID(int=n).hex}",
            "brand": "visa",
            "last4": "2222",
            "exp_month": 12,
            "exp_year": 2099,
        },
        "placed_at": "2026-11-27T10:00:00Z",
    }


def make_messages(n: int, *, exchange: str, start: int = 0, partitions: int = 16) -> list:
    """``n`` unsaved outbox rows, one aggregate each (the common case: one wave per batch).

    Aggregates are numbered from ``start + 1``, so several loads can share a table.
    """
    from outbox.models import OutboxMessage
    from outbox.partitioning import partition_for
    from outbox.signing import SigningKey, sign_row
    from outbox.tracing import new_trace

    # Signed and traced like a real event (the two x-outbox-* headers and traceparent: ~150
    # header bytes), with a key of the benchmark's own (its source has none in the settings).
    key = SigningKey(source=BENCH_SOURCE, key_id="bench-1", secret=b"benchmark-only-key")

    now = datetime.now(UTC)
    rows = []
    for i in range(n):
        event_id = uuid.uuid4()
        aggregate_id = str(start + i + 1)
        row = OutboxMessage(
            event_id=event_id,
            source=BENCH_SOURCE,
            type=BENCH_TYPE,
            schema_version=1,
            aggregate_type=AGGREGATE_TYPE,
            aggregate_id=aggregate_id,
            sequence=1,
            correlation_id=str(event_id),
            causation_id="",
            occurred_at=now,
            headers={"traceparent": new_trace().traceparent},
            payload=order_payload(start + i + 1),
            exchange=exchange,
            routing_key=BENCH_TYPE,
            partition=partition_for(AGGREGATE_TYPE, aggregate_id, partitions),
            last_error="",
        )
        rows.append(sign_row(row, key=key))
    return rows


def copy_pending(conn: psycopg.Connection, messages: list) -> None:
    """Load ``messages`` as pending rows with one COPY, in one transaction."""
    copy_sql = f"COPY outbox_message ({COPY_COLUMNS}) FROM STDIN"
    with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
        for m in messages:
            copy.write_row(
                (
                    m.event_id,
                    m.source,
                    m.type,
                    m.schema_version,
                    m.aggregate_type,
                    m.aggregate_id,
                    m.sequence,
                    m.correlation_id,
                    m.causation_id,
                    m.occurred_at,
                    json.dumps(m.headers),
                    json.dumps(m.payload, separators=(",", ":")),
                    m.exchange,
                    m.routing_key,
                    m.partition,
                    m.last_error,
                )
            )
    quiesce(conn)


INSERT_PUBLISHED_SQL = """
INSERT INTO outbox_message (
    event_id, source, type, schema_version, aggregate_type, aggregate_id, sequence,
    correlation_id, causation_id, occurred_at, headers, payload, exchange, routing_key,
    partition, created_at, next_attempt_at, attempts, last_error, published_at)
SELECT gen_random_uuid(), 'fitness.bench', %(type)s, 1, 'bench_history', i::text, 1,
       'history', '', now(), '{}'::jsonb, %(payload)s::json, %(exchange)s, %(type)s,
       i %% 16, now(), now(), 1, '', now() - make_interval(secs => %(n)s - i)
FROM generate_series(1, %(n)s) AS i
"""


def insert_published(conn: psycopg.Connection, n: int, *, exchange: str) -> None:
    """Insert ``n`` rows that were published already (the retained history), then ANALYZE."""
    payload = json.dumps(order_payload(0), separators=(",", ":"))
    conn.execute(
        INSERT_PUBLISHED_SQL, {"n": n, "type": BENCH_TYPE, "payload": payload, "exchange": exchange}
    )
    conn.execute("VACUUM ANALYZE outbox_message")
    conn.execute("VACUUM ANALYZE outbox_pending")
    quiesce(conn)


def quiesce(conn: psycopg.Connection) -> None:
    """Fresh statistics, and the bulk load's dirty pages written out before anything is timed.

    Without the CHECKPOINT, PostgreSQL writes the load back while the relay runs, and the disk
    it shares with RabbitMQ's fsyncs makes the timed part pay for the untimed load.
    """
    conn.execute("ANALYZE outbox_message")
    conn.execute("ANALYZE outbox_pending")
    conn.execute("CHECKPOINT")


def reset_outbox(conn: psycopg.Connection) -> None:
    """Empty the outbox tables of the benchmark database."""
    conn.execute(
        "TRUNCATE outbox_message, outbox_pending, outbox_aggregate_sequence RESTART IDENTITY"
    )
