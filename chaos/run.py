"""``make chaos``: faults against the shop's real processes, then proof that the books balance.

    python -m chaos.run                 # 10 minutes of faults (docs/reliability.md)
    python -m chaos.run --minutes 5
    python -m chaos.run --short         # one fault of each kind, about a minute (make test)

Loopback only, on a database (``fitness_chaos``) and a RabbitMQ virtual host (``fitness_chaos``) of
its own, both re-created at the start: a developer's ``make run`` and the test suite are never
touched — except by the two server restarts, which by nature hit the whole PostgreSQL server and
the whole RabbitMQ node (every database, every vhost) for a few seconds.

Exit status 0 when every check passed, 1 on any violation, 2 when the run could not be set up.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import traceback
from pathlib import Path

from chaos.stack import DEFAULT_BROKER_URL, DEFAULT_DATABASE, ROOT, Config, Stack, chaos_env

# Kinds that hit shared servers: once each in --short, so other test runs suffer little.
SHARED = ("rabbitmq-restart", "postgres-restart")
SHORT_PLAN = (
    "relay-kill",
    "duplicates",
    "worker-kill",
    "postgres-restart",
    "relay-kill-after-publish",
    "poison",
    "worker-kill-before-ack",
    "rabbitmq-restart",
    "worker-sigstop",
)


def say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="faults for this long")
    parser.add_argument("--short", action="store_true", help="one fault of each kind (~1 min)")
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL, help="its vhost is re-created")
    parser.add_argument("--rate", type=float, help="orders per second (default 4, short 3)")
    parser.add_argument("--customers", type=int, default=4, help="customer threads")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", choices=["standalone", "celery"], default="standalone")
    parser.add_argument("--heartbeat", type=int, help="workers' AMQP heartbeat (5 s, short 2 s)")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "var" / "chaos")
    parser.add_argument(
        "--keep-vhost", action="store_true", help="keep a vhost this run created (default: delete)"
    )
    parser.add_argument("--quiet-timeout", type=float, help="seconds to wait for quiescence")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    rng = random.Random(seed)
    config = Config(
        database=args.database,
        broker_url=args.broker_url,
        run_dir=args.run_dir,
        heartbeat=args.heartbeat or (2 if args.short else 5),
        workers=args.workers,
    )
    say(f"seed {seed}; database {config.database}, vhost {config.vhost}, logs in {config.log_dir}")
    from chaos.stack import prepare, purge_queues, rabbitmqctl, service_queues

    try:
        created = prepare(config)
    except Exception as exc:
        say(f"could not set up: {exc}")
        return 2
    os.environ.update(chaos_env(config))
    import django

    django.setup()
    from outbox.consumer.service import all_services

    services = [service.name for service in all_services()]
    config.queues = service_queues(services)
    purge_queues(config, config.queues)
    stack = Stack(config, services)
    try:
        return _run(args, config, stack, rng, seed)
    except Exception:
        traceback.print_exc()
        return 2
    finally:
        stack.stop()
        if created and not args.keep_vhost:
            # Leave the node as we found it: ~50 quorum queues fewer (each holds file handles).
            rabbitmqctl("delete_vhost", config.vhost)


def _run(
    args: argparse.Namespace, config: Config, stack: Stack, rng: random.Random, seed: int
) -> int:
    from chaos.check import caught_up, check, collect_dead_letters, wait_quiet
    from chaos.faults import Faults
    from chaos.load import LoadDriver
    from chaos.report import render

    product_id = _stock_up()
    started = time.time()
    stack.start()
    _wait_ready(stack)
    say(
        f"stack up in {time.time() - started:.1f} s: web :{stack.port}, 2 relays, "
        f"workers {', '.join(stack.services)}"
    )

    rate = args.rate or (3.0 if args.short else 4.0)
    driver = LoadDriver(
        port=stack.port, product_id=product_id, rate=rate, customers=args.customers, seed=seed
    )
    driver.start()
    faults = Faults(stack, rng, short=args.short)
    injected_faults = []
    time.sleep(2 if args.short else 10)  # a calm baseline first

    deadline = time.monotonic() + (0 if args.short else args.minutes * 60)
    plan = list(SHORT_PLAN) if args.short else []
    # --short: the whole plan; otherwise rounds of every kind, until the deadline.
    while plan if args.short else time.monotonic() < deadline:
        if not plan:
            plan = list(faults.kinds)
            rng.shuffle(plan)
        kind = plan.pop(0)
        say(f"fault: {kind}")
        fault = faults.kinds[kind]()
        injected_faults.append(fault)
        say(f"  {fault.target} {fault.note} ({fault.ended - fault.started:.1f} s)")
        # Let it recover before the next one, so each fault's recovery is measured alone.
        until = time.monotonic() + (60 if args.short else 120)
        while not caught_up(config, fault.ended) and time.monotonic() < until:
            time.sleep(0.5)
        time.sleep(rng.uniform(0.3, 0.8) if args.short else rng.uniform(3, 8))
        gone = stack.check_alive()
        if gone:
            say(f"process(es) exited by themselves: {gone}")

    say(f"faults over; stopping the load ({driver.placed} orders placed)")
    problems = driver.stop()
    quiet, waited, detail = wait_quiet(config, args.quiet_timeout or (60 if args.short else 300))
    say(f"{'quiet' if quiet else 'NOT quiet'} after {waited:.1f} s: {detail}")
    collect_dead_letters(config, stack)
    report = check(config, stack, driver.orders, faults.injected, injected_faults)
    report.add("load driver ran without errors", problems)
    report.add("system quiet at the end", [] if quiet else [f"after {waited:.0f} s: {detail}"])
    report.figures.update(
        {
            "seed": seed,
            "mode": "short" if args.short else f"{args.minutes:g} min",
            "workers": config.workers,
            "rate": rate,
            "api_errors": dict(driver.api.errors),
            "api_retries": dict(driver.retries),
            "seconds": round(time.time() - started, 1),
        }
    )
    print(render(report))
    result = config.run_dir / "result.json"
    result.write_text(
        json.dumps(
            {
                "ok": report.ok,
                "checks": report.checks,
                "figures": report.figures,
                "faults": report.faults,
            },
            indent=2,
            default=str,
        )
    )
    say(f"details: {result}")
    return 0 if report.ok else 1


def _stock_up() -> int:
    """The product every order buys, with stock that never runs out."""
    from apps.catalog.models import Product

    product = Product.objects.order_by("id").first()
    Product.objects.filter(pk=product.pk).update(stock=10**9)
    return product.pk


def _wait_ready(stack: Stack, timeout: float = 60) -> None:
    """Until the web answers and every service queue has its consumer."""
    import http.client

    from chaos.check import queue_state

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gone = stack.check_alive()
        if gone:
            raise RuntimeError(f"exited at start: {gone}; see {stack.config.log_dir}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=2)
            conn.request("GET", "/api/products")
            web = conn.getresponse().status == 200
            conn.close()
        except OSError:
            web = False
        state = queue_state(stack.config)
        consuming = all(state.get(f"{s}.events", (0, 0, 0))[2] >= 1 for s in stack.services)
        if web and consuming:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the stack did not come up in {timeout:.0f} s; see {stack.config.log_dir}")


if __name__ == "__main__":
    sys.exit(main())
