"""Quiescence and the checker: what the databases and the broker must show after the faults.

Every check is computed from the run's database (orders, outbox, inboxes, the services' tables,
dead letters) and from RabbitMQ (``rabbitmqctl list_queues``), never from the processes' word.
A check returns a list of violations (empty = passed); ``Report`` adds the figures of the table.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench.common import median, percentile
from chaos.faults import POISON_HEADER, POISON_REASONS, Fault, Injected, subscription_map
from chaos.load import OrderRecord
from chaos.stack import PYTHON, ROOT, Config, Stack

FINAL = ("delivered", "payment_failed", "cancelled")
GOOD_LAST4, DECLINED_LAST4 = "2222", "0002"


# -- quiescence ---------------------------------------------------------------------------------
def queue_state(config: Config) -> dict[str, tuple[int, int, int]]:
    """``{queue: (ready, unacknowledged, consumers)}`` of the run's RabbitMQ node."""
    out = config.rabbitmqctl(
        "list_queues",
        "name",
        "messages_ready",
        "messages_unacknowledged",
        "consumers",
        "--no-table-headers",
    )
    state = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[1].isdigit():
            state[parts[0]] = (int(parts[1]), int(parts[2]), int(parts[3]))
    return state


def _db_state(config: Config) -> tuple[int, int, int]:
    """(outbox rows not published, orders not final, inbox rows)."""
    with psycopg.connect(config.database_url(), connect_timeout=5) as conn:
        pending = conn.execute(
            "SELECT count(*) FROM outbox_message WHERE published_at IS NULL"
        ).fetchone()[0]
        open_orders = conn.execute(
            "SELECT count(*) FROM orders_order WHERE NOT status = ANY(%s)", [list(FINAL)]
        ).fetchone()[0]
        inbox = conn.execute("SELECT count(*) FROM outbox_consumer_inbox").fetchone()[0]
    return pending, open_orders, inbox


def busy_queues(state: dict[str, tuple[int, int, int]]) -> dict[str, int]:
    """Work queues (``.events``, ``.retry.N``) still holding messages."""
    return {
        name: ready + unacked
        for name, (ready, unacked, _consumers) in state.items()
        if (name.endswith(".events") or ".retry." in name) and ready + unacked
    }


def wait_quiet(config: Config, timeout: float, settle: float = 3.0) -> tuple[bool, float, str]:
    """Wait until the outbox is drained, every order is final, the work queues are empty and
    the inboxes stopped growing for ``settle`` seconds. Returns (quiet, seconds, last state)."""
    started = time.monotonic()
    last_inbox, stable_since, detail = -1, None, ""
    while time.monotonic() - started < timeout:
        try:
            pending, open_orders, inbox = _db_state(config)
            busy = busy_queues(queue_state(config))
        except (psycopg.Error, RuntimeError) as exc:
            detail = f"not reachable: {exc}"
            time.sleep(1)
            continue
        detail = f"outbox pending {pending}, orders not final {open_orders}, queues {busy}"
        if pending == 0 and open_orders == 0 and not busy and inbox == last_inbox:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= settle:
                return True, time.monotonic() - started, detail
        else:
            stable_since = None
        last_inbox = inbox
        time.sleep(1)
    return False, time.monotonic() - started, detail


def caught_up(config: Config, before: float) -> bool:
    """Whether every order placed before ``before`` (wall clock) is in a final state."""
    try:
        with psycopg.connect(config.database_url(), connect_timeout=3) as conn:
            row = conn.execute(
                "SELECT count(*) FROM orders_order WHERE placed_at <= to_timestamp(%s) "
                "AND NOT status = ANY(%s)",
                [before, list(FINAL)],
            ).fetchone()
        return row[0] == 0
    except psycopg.Error:
        return False


def _settled_queue_state(config: Config, timeout: float = 20) -> dict[str, tuple[int, int, int]]:
    """The queues once their figures settled: quorum queues publish their counters periodically,
    so a queue just emptied (the dead-letter queues after collecting) may still show messages."""
    deadline = time.monotonic() + timeout
    state = queue_state(config)
    while time.monotonic() < deadline and any(
        ready + unacked for name, (ready, unacked, _c) in state.items() if not name.endswith(".dlx")
    ):
        time.sleep(1)
        state = queue_state(config)
    return state


def collect_dead_letters(config: Config, stack: Stack) -> None:
    """What the maintenance worker does every minute: move ``<svc>.dead`` into the table."""
    subprocess.run(
        [PYTHON, "manage.py", "collect_dead_letters"],
        cwd=ROOT,
        env=stack.env,
        check=True,
        capture_output=True,
        timeout=120,
    )


# -- the report ---------------------------------------------------------------------------------
@dataclass
class Report:
    checks: dict[str, list[str]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(self.checks.values())

    def add(self, name: str, violations: list[str]) -> None:
        self.checks[name] = violations


def _cursor_rows(sql: str, params: list | None = None) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall()


def check(
    config: Config,
    stack: Stack,
    records: list[OrderRecord],
    injected: Injected,
    faults: list[Fault],
) -> Report:
    """Every check of issue 7, on a quiet system."""
    from django.db import connections

    connections.close_all()  # a database restart may have broken them
    report = Report()
    subscribers = subscription_map()
    known = {r.order_id: r for r in records}

    # Orders: (id, status, last4, placed_at epoch) and the events recorded for each.
    orders = {
        row[0]: row
        for row in _cursor_rows(
            "SELECT o.id, o.status, o.card_last4, extract(epoch FROM o.placed_at) "
            "FROM orders_order o JOIN auth_user u ON u.id = o.customer_id "
            "WHERE u.username LIKE 'chaos-%%'"
        )
    }
    events = _cursor_rows(
        "SELECT event_id::text, type, aggregate_type, aggregate_id, sequence, "
        "published_at IS NOT NULL, parked_at IS NOT NULL FROM outbox_message"
    )
    per_order: dict[int, Counter[str]] = defaultdict(Counter)
    for _event_id, event_type, _agg_type, aggregate_id, *_ in events:
        if aggregate_id.isdigit():
            per_order[int(aggregate_id)][event_type] += 1

    # 1. The driver's committed orders are all there, and nothing else is.
    lost = [f"order {i} answered 201 but is not in the database" for i in known if i not in orders]
    unknown = [
        f"order {i} exists but no checkout of the driver made it" for i in orders if i not in known
    ]
    report.add("committed orders all present, none unknown", lost + unknown)

    # 2. Final state consistent with the card and the cancellation.
    payments = {
        row[0]: row[1:]
        for row in _cursor_rows(
            "SELECT order_id, status, count(*) OVER (PARTITION BY order_id) FROM payments_payment"
        )
    }
    shipments = {
        row[0]: row[1:]
        for row in _cursor_rows(
            "SELECT order_id, status, count(*) OVER (PARTITION BY order_id) FROM shipping_shipment"
        )
    }
    # Orders whose cancellation reached shipping only after their parcel had left.
    late_cancellations = {
        row[0]
        for row in _cursor_rows(
            "SELECT order_id FROM shipping_cancelledorder WHERE parcel_already_dispatched"
        )
    }
    state_violations: list[str] = []
    effect_violations: list[str] = []
    outcome: Counter[str] = Counter()
    for order_id, (_id, status, last4, _placed) in orders.items():
        types = per_order[order_id]
        cancelled = types["orders.order.cancelled"] > 0
        card = "good" if last4 == GOOD_LAST4 else "declined" if last4 == DECLINED_LAST4 else "?"
        payment = payments.get(order_id)
        shipment = shipments.get(order_id)
        record = known.get(order_id)
        if record and record.card != card:
            state_violations.append(f"order {order_id}: card {card}, the driver used {record.card}")
        if record and record.cancel == "ok" and not cancelled:
            state_violations.append(f"order {order_id}: cancel answered 200, no cancelled event")
        if record and record.cancel == "refused" and cancelled:
            state_violations.append(f"order {order_id}: cancel answered 409, yet cancelled")
        if cancelled:
            expected = "cancelled"
            pay_ok = payment is None or payment[0] in ("refunded", "declined")
            refund_events = types["payments.payment.refunded"]
            if (payment is not None and payment[0] == "refunded") != (refund_events == 1):
                effect_violations.append(
                    f"order {order_id}: payment {payment}, {refund_events} refunds"
                )
            # A cancelled order is never shipped, unless its parcel had already left (flagged).
            ship_ok = shipment is None or (
                order_id in late_cancellations and payment is not None and payment[0] == "refunded"
            )
            kind = "cancelled-refunded" if payment and payment[0] == "refunded" else "cancelled"
        elif card == "good":
            expected = "delivered"
            pay_ok = payment is not None and payment[0] == "authorized"
            ship_ok = shipment is not None and shipment[0] == "delivered"
            kind = "delivered"
        else:
            expected = "payment_failed"
            pay_ok = payment is not None and payment[0] == "declined"
            ship_ok = shipment is None
            kind = "payment-failed"
        outcome[kind] += 1
        if status != expected:
            state_violations.append(
                f"order {order_id} ({card} card, cancelled={cancelled}): {status}, "
                f"expected {expected}"
            )
        if not pay_ok:
            state_violations.append(f"order {order_id} ({card}, {status}): payment {payment}")
        if not ship_ok:
            state_violations.append(f"order {order_id} ({card}, {status}): shipment {shipment}")
        for what in (payment, shipment):
            if what is not None and what[1] != 1:
                effect_violations.append(f"order {order_id}: {what[1]} rows of {what}")
        for event_type, count in types.items():
            if count != 1:
                effect_violations.append(f"order {order_id}: {count} x {event_type} recorded")
        if types["orders.order.placed"] != 1:
            effect_violations.append(
                f"order {order_id}: {types['orders.order.placed']} placed events"
            )
    report.add("every order final and consistent with its card and cancellation", state_violations)

    # 3. Effects once: e-mails per (order, step) and the monolith's timeline.
    from consumers.notifications.services import STALE_AFTER

    mail_rows = _cursor_rows("SELECT order_id, kind, sent_at FROM notifications_notification")
    mails = Counter((order_id, kind) for order_id, kind, _sent in mail_rows)
    sent_at = {(order_id, kind): sent for order_id, kind, sent in mail_rows}
    notified_types = {t for t, services in subscribers.items() if "notifications" in services}
    for order_id, types in per_order.items():
        if order_id not in orders:
            continue
        for event_type in notified_types:
            want = types[event_type]
            overtaking = [k for k in STALE_AFTER.get(event_type, ()) if (order_id, k) in sent_at]
            if overtaking and want == 1:
                # No mail goes out after a mail that overtook it ("on its way" after
                # "delivered", anything saying the order is coming after "cancelled"...): one
                # only if it was sent before them all.
                mail = sent_at.get((order_id, event_type))
                first = min(overtaking, key=lambda kind: sent_at[(order_id, kind)])
                if mail is not None and mail > sent_at[(order_id, first)]:
                    effect_violations.append(
                        f"order {order_id}: {event_type} e-mail after the {first} e-mail"
                    )
                continue
            if mails[(order_id, event_type)] != want:
                effect_violations.append(
                    f"order {order_id}: {mails[(order_id, event_type)]} e-mails for {event_type}, "
                    f"{want} events"
                )
    for (order_id, kind), count in Counter(
        _cursor_rows("SELECT order_id, kind FROM orders_ordertimelineentry")
    ).items():
        if count != 1:
            effect_violations.append(f"order {order_id}: {count} timeline entries {kind}")
    report.add("each payment, refund, shipment, e-mail and step exactly once", effect_violations)

    # 4. Outbox drained: nothing pending, nothing parked.
    pending = [e[0] for e in events if not e[5]]
    parked = [e[0] for e in events if e[6]]
    report.add(
        "outbox drained (nothing pending or parked)",
        [f"{len(pending)} pending, e.g. {pending[:3]}"] * bool(pending)
        + [f"{len(parked)} parked, e.g. {parked[:3]}"] * bool(parked),
    )

    # 5. Every published event reached every subscriber (inbox), or a dead-letter table with a
    #    reason; and the dead letters are exactly the poison messages.
    inbox = _cursor_rows(
        "SELECT service, event_id::text, id, attempts FROM outbox_consumer_inbox ORDER BY id"
    )
    handled = {(service, event_id) for service, event_id, _id, _attempts in inbox}
    dead = _cursor_rows(
        "SELECT service, coalesce(event_id::text, ''), reason, headers "
        "FROM outbox_consumer_dead_letter"
    )
    dead_keys = {(service, event_id): reason for service, event_id, reason, _h in dead}
    missing, in_dead = [], []
    for event_id, event_type, *_rest in events:
        for service in subscribers.get(event_type, ()):
            if (service, event_id) in handled:
                continue
            if (service, event_id) in dead_keys:
                in_dead.append(
                    f"{service}: {event_type} {event_id} dead-lettered: "
                    f"{dead_keys[(service, event_id)]}"
                )
            else:
                missing.append(f"{service}: {event_type} {event_id} never handled")
    report.add("every event handled by every subscriber (lost = 0)", missing)
    poison = {(service, poison_id): kind for service, poison_id, kind in injected.poison}
    unexpected_dead = in_dead + [
        f"{service}: {event_id} ({reason[:80]})"
        for service, event_id, reason, headers in dead
        if (service, event_id) not in poison and POISON_HEADER not in (headers or {})
    ]
    unexpected_dead = sorted(set(unexpected_dead))
    missing_poison = [
        f"{service}: poison {kind} {pid} not in the dead letters"
        for (service, pid), kind in poison.items()
        if (service, pid) not in dead_keys
    ]
    no_reason = [f"{s}: {e} has no reason" for s, e, reason, _h in dead if not reason.strip()]
    wrong_reason = [
        f"{service}: poison {kind} {pid} dead-lettered for another reason: "
        f"{dead_keys[(service, pid)][:120]}"
        for (service, pid), kind in poison.items()
        if (service, pid) in dead_keys and POISON_REASONS[kind] not in dead_keys[(service, pid)]
    ]
    report.add(
        "dead letters = exactly the poison messages, each with its own reason",
        unexpected_dead + missing_poison + no_reason + wrong_reason,
    )

    # 6. Order per aggregate: each service handled each aggregate's events in sequence order,
    #    except an event whose handling had failed and was retried (docs/consumers.md, "Order
    #    per aggregate"): its inbox row counts the attempts of the delivery that succeeded, which
    #    may be a fresh copy from a relay (attempts = 1), so the workers' "retry" lines count too.
    worker_logs = "".join(
        proc.all_logs() for proc in stack.all() if proc.name not in ("web", "relay1", "relay2")
    )
    retried = set(
        re.findall(
            r"consumer (\S+): retry \d+ in [\d.]+s \(.*?\) event=([0-9a-f-]{36})",
            worker_logs,
            re.DOTALL,  # the error in parentheses may span lines
        )
    )
    by_event = {e[0]: (e[2], e[3], e[4]) for e in events}
    last: dict[tuple[str, str, str], int] = {}
    reordered_by_retry, order_violations = 0, []
    for service, event_id, _id, attempts in inbox:
        if event_id not in by_event:
            continue
        aggregate_type, aggregate_id, sequence = by_event[event_id]
        key = (service, aggregate_type, aggregate_id)
        if key in last and sequence < last[key]:
            if attempts > 1 or (service, event_id) in retried:
                reordered_by_retry += 1
            else:
                order_violations.append(
                    f"{service}: {aggregate_type} {aggregate_id} #{sequence} handled after "
                    f"#{last[key]} on its first delivery"
                )
        last[key] = max(sequence, last.get(key, 0))
    report.add("per-aggregate order kept by every service", order_violations)

    # 7. The broker: work queues empty (nothing unacknowledged), every worker consuming, and
    #    the dead-letter queues emptied into the table.
    state = _settled_queue_state(config)
    broker = [f"{name} holds {count} messages" for name, count in busy_queues(state).items()]
    broker += [
        f"{name}: {unacked} unacknowledged" for name, (_r, unacked, _c) in state.items() if unacked
    ]
    broker += [
        f"{service}.events has {state.get(f'{service}.events', (0, 0, 0))[2]} consumers"
        for service in stack.services
        if state.get(f"{service}.events", (0, 0, 0))[2] != 1
    ]
    broker += [
        f"{name} still holds {r} messages"
        for name, (r, _u, _c) in state.items()
        if name.endswith(".dead") and r
    ]
    report.add("no queue holds unacknowledged or waiting messages", sorted(set(broker)))

    # 8. The copies we published were absorbed as duplicates by every subscriber.
    duplicates = Counter(re.findall(r"consumer (\S+): duplicate ignored event=(\S+)", worker_logs))
    copies_missed = [
        f"copy of {event_id}: {sum(n for (s, e), n in duplicates.items() if e == event_id)} "
        f"duplicates logged, {subscribers_count} subscribers"
        for event_id, subscribers_count in injected.copies
        if sum(n for (s, e), n in duplicates.items() if e == event_id) < subscribers_count
    ]
    if any(fault.kind == "duplicates" for fault in faults) and not injected.copies:
        copies_missed.append("the duplicates fault found no handled event to republish")
    report.add("every republished copy absorbed as a duplicate", copies_missed)

    # 9. No process died by itself.
    report.add("every process alive at the end", [f"{name} exited" for name in stack.check_alive()])

    # -- figures -------------------------------------------------------------------------------
    latency = _latencies(orders)
    recoveries = _recoveries(faults, latency)
    # The file backend ends every message with a line of 79 dashes (files may hold several).
    separator = "\n" + "-" * 79 + "\n"
    texts = [path.read_text(errors="replace") for path in config.mail_dir.iterdir()]
    mails_written = sum(text.count(separator) for text in texts)
    # A mail sent again (its transaction failed after the send) keeps its Message-ID: what a
    # customer's mail client shows once. (The header may be folded onto the next line.)
    mail_ids = {m for text in texts for m in re.findall(r"^Message-ID:\s*(<[^>]+>)", text, re.M)}
    rows = sum(mails.values())
    report.add(
        "one Message-ID per e-mail row (copies of a re-sent mail share it)",
        [] if len(mail_ids) == rows else [f"{len(mail_ids)} Message-IDs for {rows} rows"],
    )
    report.faults = recoveries
    report.figures = {
        "orders": len(orders),
        "outcomes": dict(outcome),
        "orders_recovered_after_lost_answer": sum(1 for r in records if r.recovered),
        "events_published": len(events) - len(pending),
        "inbox_rows": len(inbox),
        "duplicates_absorbed": sum(duplicates.values()),
        "parcels_dispatched_before_cancellation": len(late_cancellations & set(orders)),
        "duplicates_from_copies": sum(n for _e, n in injected.copies),
        "reordered_by_retry": reordered_by_retry,
        "poison_dead_lettered": sum(1 for key in poison if key in dead_keys),
        "lost": len(missing),
        "double_effects": len(effect_violations),
        "notification_rows": sum(mails.values()),
        "mails_written": mails_written,
        "mail_message_ids": len(mail_ids),
        "latency_baseline_ms": _stats(
            [
                (final - placed) * 1000
                for placed, final in latency.values()
                if not any(placed <= r["window"][1] and final >= r["window"][0] for r in recoveries)
            ]
        ),
        "latency_all_ms": _stats([(final - placed) * 1000 for placed, final in latency.values()]),
    }
    return report


def _latencies(orders: dict[int, tuple]) -> dict[int, tuple[float, float]]:
    """{order: (placed, final)} (epoch seconds) for orders that ended by themselves."""
    rows = _cursor_rows(
        "SELECT t.order_id, min(extract(epoch FROM t.created_at)) FROM orders_ordertimelineentry t "
        "JOIN orders_order o ON o.id = t.order_id WHERE t.status = o.status "
        "AND o.status IN ('delivered', 'payment_failed') GROUP BY t.order_id"
    )
    return {oid: (float(orders[oid][3]), float(final)) for oid, final in rows if oid in orders}


def _recoveries(
    faults: list[Fault], latency: dict[int, tuple[float, float]]
) -> list[dict[str, Any]]:
    """Per fault: how long until every order in flight during it had reached its final state."""
    out = []
    for fault in faults:
        affected = [
            (placed, final)
            for placed, final in latency.values()
            if placed <= fault.ended and final >= fault.started
        ]
        recovered = max([fault.ended] + [final for _p, final in affected])
        out.append(
            {
                "kind": fault.kind,
                "target": fault.target,
                "note": fault.note,
                "hit": fault.hit,
                "duration_s": round(fault.ended - fault.started, 2),
                "recovery_s": round(recovered - fault.started, 2),
                "affected_orders": len(affected),
                "affected_latency_ms": _stats([(f - p) * 1000 for p, f in affected]),
                "window": (fault.started, recovered),
            }
        )
    return out


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(median(values), 1),
        "p95": round(percentile(values, 95), 1),
        "max": round(max(values), 1),
    }
