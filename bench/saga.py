"""Benchmark 5 (issue 4): the order saga end to end, one worker per service.

The relay and one worker per service (payments, shipping, notifications, orders) run as
subprocesses on the benchmark database and virtual host, with ``SHIPPING_DELIVERY_DELAY_SECONDS=0``.
Orders go through the shop's own services (``apps.carts.services.cart_add_item`` then
``apps.orders.services.order_place`` with the good test card; carts are filled beforehand), in
three phases:

* **backlog**: N orders placed while nothing else runs, then the relay and the workers start;
  capacity = N / (last ``delivered`` - first ``paid``): the saga alone, not the checkout;
* **burst**: N more orders placed back to back (one thread) while everything runs; throughput =
  N / (last order delivered - first order placed), what the issue asks for;
* **paced**: a few orders per second, far below capacity, for the checkout-to-paid latency of a
  system that is not saturated (in the burst it mostly measures queueing).

Times come from the order's timeline (``OrderTimelineEntry.created_at`` of
``orders.order.placed``, ``payments.payment.authorized`` and ``shipping.shipment.delivered``).
Workers are ``manage.py consume_events --service NAME`` by default, or the Procfile's Celery
workers with ``--saga-workers celery``.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path

import amqp

from bench.common import (
    PYTHON,
    amqp_connect,
    bench_env,
    connect_db,
    median,
    percentile,
    process,
    run,
)
from bench.rows import reset_outbox

SERVICES = ("payments", "shipping", "notifications", "orders")
GOOD_CARD = {"number": "4222222222222", "exp_month": 12, "exp_year": 2099, "cvv": "123"}
PLACED = "orders.order.placed"
PAID = "payments.payment.authorized"
DELIVERED = "shipping.shipment.delivered"


def saga_ready() -> str | None:
    """Why the saga benchmark cannot run (None when the services are there)."""
    import importlib

    for module in (
        "consumers.payments.handlers",
        "consumers.shipping.handlers",
        "consumers.notifications.handlers",
        "apps.orders.handlers",
        "outbox.consumer.management.commands.consume_events",
    ):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return f"{module} is missing ({exc})"
    return None


def _worker_command(service: str, kind: str) -> list[str]:
    if kind == "celery":
        celery = str(Path(PYTHON).parent / "celery")
        return [
            celery,
            "-A",
            "fitness",
            "worker",
            "--consume-service",
            service,
            "-Q",
            f"celery-{service}",
            "-c",
            "1",
            "-n",
            f"bench-{service}@%h",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "WARNING",
        ]
    return [PYTHON, "manage.py", "consume_events", "--service", service]


def _queue_state(channel: amqp.Channel, queue: str) -> tuple[int, int]:
    ok = channel.queue_declare(queue, passive=True)
    return ok.message_count, ok.consumer_count


def _wait_for_consumers(procs: dict, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with contextlib.closing(amqp_connect("bench-saga-check")) as conn:
        channel = conn.channel()
        waiting = set(SERVICES)
        while waiting:
            for service in list(waiting):
                if _queue_state(channel, f"{service}.events")[1] >= 1:
                    waiting.discard(service)
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}) before consuming")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no consumer on the queues of {sorted(waiting)}")
            time.sleep(0.2)


def _purge_service_queues() -> None:
    with contextlib.closing(amqp_connect("bench-saga-purge")) as conn:
        channel = conn.channel()
        for service in SERVICES:
            channel.queue_purge(f"{service}.events")


def _prepare_customers(n: int, tag: str, product_id: int) -> list:
    from django.contrib.auth import get_user_model

    from apps.carts.services import cart_add_item

    customers = []
    for k in range(n):
        user = get_user_model().objects.create_user(
            username=f"bench-{tag}-{k}", email=f"bench-{tag}-{k}@example.com", password=None
        )
        cart_add_item(customer=user, product_id=product_id, quantity=1)
        customers.append(user)
    return customers


def _bench_product() -> int:
    from decimal import Decimal

    from apps.catalog.models import Product

    product, _ = Product.objects.update_or_create(
        sku="BENCH-SAGA",
        defaults={
            "name": "Benchmark water bottle",
            "price": Decimal("12.50"),
            "image": "bottle",
            "stock": 10_000_000,
        },
    )
    return product.pk


def _place(customer: object) -> int:
    from apps.orders.services import CardInput, ShippingAddress, order_place

    order = order_place(
        customer=customer,
        address=ShippingAddress("Ada Lovelace", "12 Marathon Road", "Springfield", "12345", "DE"),
        delivery="standard",
        card=CardInput(**GOOD_CARD),
    )
    return order.pk


def _wait_delivered(
    order_ids: list[int], timeout: float, depths: dict[str, int] | None = None
) -> int:
    """Wait until every order is delivered; with ``depths``, record each service queue's
    deepest backlog on the way (the slowest worker is the one whose queue grows)."""
    from apps.orders.models import Order

    deadline = time.monotonic() + timeout
    done = 0
    with contextlib.closing(amqp_connect("bench-saga-depths")) as conn:
        channel = conn.channel()
        while time.monotonic() < deadline:
            done = Order.objects.filter(pk__in=order_ids, status="delivered").count()
            if done == len(order_ids):
                break
            if depths is not None:
                for service in SERVICES:
                    ready = _queue_state(channel, f"{service}.events")[0]
                    depths[service] = max(depths.get(service, 0), ready)
            time.sleep(0.2)
    return done


def _timeline(order_ids: list[int]) -> dict[int, dict[str, float]]:
    from apps.orders.models import OrderTimelineEntry

    times: dict[int, dict[str, float]] = {}
    rows = OrderTimelineEntry.objects.filter(
        order_id__in=order_ids, kind__in=[PLACED, PAID, DELIVERED]
    ).values_list("order_id", "kind", "created_at")
    for order_id, kind, created in rows:
        times.setdefault(order_id, {})[kind] = created.timestamp()
    return times


def _phase_stats(order_ids: list[int], delivered: int, start: str = PLACED) -> dict:
    """Throughput from the first ``start`` entry to the last delivery, and the latencies."""
    times = _timeline(order_ids)
    paid = [(t[PAID] - t[PLACED]) * 1000 for t in times.values() if PAID in t and PLACED in t]
    full = [
        (t[DELIVERED] - t[PLACED]) * 1000 for t in times.values() if DELIVERED in t and PLACED in t
    ]
    firsts = [t[start] for t in times.values() if start in t]
    lasts = [t[DELIVERED] for t in times.values() if DELIVERED in t]
    span = (max(lasts) - min(firsts)) if firsts and lasts else float("nan")
    return {
        "orders": len(order_ids),
        "delivered": delivered,
        "throughput_from": start,
        "seconds_to_last_delivered": round(span, 3),
        "orders_per_s": round(delivered / span, 2) if span == span and span > 0 else None,
        "paid_median_ms": round(median(paid), 1),
        "paid_p99_ms": round(percentile(paid, 99), 1),
        "delivered_median_ms": round(median(full), 1),
        "delivered_p99_ms": round(percentile(full, 99), 1),
    }


def _place_all(customers: list) -> tuple[list[int], float]:
    started = time.perf_counter()
    ids = [_place(c) for c in customers]
    return ids, time.perf_counter() - started


def _start_services(stack: contextlib.ExitStack, env: dict, workers: str, log_dir: Path) -> dict:
    procs = {}
    for service in SERVICES:
        procs[service] = stack.enter_context(
            process(_worker_command(service, workers), env=env, log=log_dir / f"saga_{service}.log")
        )
    return procs


def saga(*, orders: int, paced_orders: int, paced_rate: float, workers: str, log_dir: Path) -> dict:
    """Run the three phases and return their figures (or why the benchmark was skipped)."""
    from django.db import connections

    reason = saga_ready()
    if reason:
        return {"skipped": reason}
    env = bench_env(LOG_LEVEL="INFO", SHIPPING_DELIVERY_DELAY_SECONDS="0")
    run([PYTHON, "manage.py", "setup_broker"], env=env)
    _purge_service_queues()
    with connect_db() as conn:
        reset_outbox(conn)
    tag = uuid.uuid4().hex[:8]
    product_id = _bench_product()
    customers = _prepare_customers(2 * orders + paced_orders, tag, product_id)
    backlog_customers = customers[:orders]
    burst_customers = customers[orders : 2 * orders]
    paced_customers = customers[2 * orders :]

    # Backlog: the orders are placed while nothing else runs (the checkout alone), then the
    # relay and the workers start and work the backlog off: the saga's own capacity.
    backlog_ids, backlog_place_seconds = _place_all(backlog_customers)
    connections.close_all()
    with contextlib.ExitStack() as stack:
        procs = {
            "relay": stack.enter_context(
                process(
                    [PYTHON, "manage.py", "relay_outbox"], env=env, log=log_dir / "saga_relay.log"
                )
            )
        }
        procs.update(_start_services(stack, env, workers, log_dir))
        _wait_for_consumers(procs)
        depths: dict[str, int] = {}
        backlog_delivered = _wait_delivered(
            backlog_ids, timeout=max(120.0, orders * 1.0), depths=depths
        )
        backlog = _phase_stats(backlog_ids, backlog_delivered, start=PAID)
        backlog["max_queue_depth"] = depths
        backlog["placing_orders_per_s"] = round(orders / backlog_place_seconds, 1)

        # Burst: the same number of orders placed back to back while everything runs.
        burst_ids, burst_place_seconds = _place_all(burst_customers)
        burst_delivered = _wait_delivered(burst_ids, timeout=max(120.0, orders * 1.0))
        burst = _phase_stats(burst_ids, burst_delivered)
        burst["placing_orders_per_s"] = round(orders / burst_place_seconds, 1)

        # Paced: a few orders a second, for the latency of a system that is not saturated.
        paced_ids = []
        t0 = time.monotonic()
        for i, customer in enumerate(paced_customers):
            delay = t0 + i / paced_rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            paced_ids.append(_place(customer))
        paced_delivered = _wait_delivered(paced_ids, timeout=60)
        paced = _phase_stats(paced_ids, paced_delivered)
        paced["rate"] = paced_rate
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}) during the benchmark")
    connections.close_all()
    return {
        "workers": workers,
        "orders": orders,
        "delivered": burst["delivered"],
        "orders_per_s": burst["orders_per_s"],
        "capacity_orders_per_s": backlog["orders_per_s"],
        "paid_median_ms": paced["paid_median_ms"],
        "paid_p99_ms": paced["paid_p99_ms"],
        "backlog": backlog,
        "burst": burst,
        "paced": paced,
        "shipping_delivery_delay_seconds": 0,
    }
