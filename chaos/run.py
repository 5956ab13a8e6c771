"""``make chaos``: faults against the shop's real processes, then proof that the books balance.

    python -m chaos.run                 # 10 minutes of faults (docs/reliability.md)
    python -m chaos.run --minutes 5
    python -m chaos.run --short         # one fault of each kind, about a minute (make test)

Loopback only, on a PostgreSQL cluster and a RabbitMQ node of its own (chaos/servers.py), started
from the machine's installed binaries on free ports and removed at the end: the server restarts
hit only the run, never a developer's ``make run``, other test runs or CI.

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

from chaos.servers import PrivateServers
from chaos.stack import ROOT, Config, Stack, chaos_env, free_port

# Duplicates come after some traffic: they republish events every subscriber already handled.
SHORT_PLAN = (
    "relay-kill",
    "worker-kill",
    "postgres-restart",
    "relay-kill-after-publish",
    "poison",
    "duplicates",
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
    parser.add_argument("--rate", type=float, help="orders per second (default 4, short 3)")
    parser.add_argument("--customers", type=int, default=4, help="customer threads")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", choices=["standalone", "celery"], default="standalone")
    parser.add_argument("--heartbeat", type=int, help="workers' AMQP heartbeat (5 s, short 2 s)")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "var" / "chaos")
    parser.add_argument(
        "--keep-servers", action="store_true", help="keep the servers' data and logs (a temp dir)"
    )
    parser.add_argument("--quiet-timeout", type=float, help="seconds to wait for quiescence")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    rng = random.Random(seed)
    config = Config(
        servers=PrivateServers.create(free_port),
        run_dir=args.run_dir,
        heartbeat=args.heartbeat or (2 if args.short else 5),
        workers=args.workers,
    )
    say(f"seed {seed}; servers in {config.servers.root}, logs in {config.log_dir}")
    from chaos.stack import prepare

    stack = None
    try:
        prepare(config)
        say(
            f"PostgreSQL :{config.servers.postgres.port}, "
            f"RabbitMQ :{config.servers.rabbitmq.port} ({config.servers.rabbitmq.node})"
        )
        os.environ.update(chaos_env(config))
        import django

        django.setup()
        from outbox.consumer.service import all_services

        stack = Stack(config, [service.name for service in all_services()])
        return _run(args, config, stack, rng, seed)
    except Exception:
        traceback.print_exc()
        say("could not set up" if stack is None else "the run failed")
        return 2
    finally:
        if stack is not None:  # and so Django is set up: its connections go before the server
            stack.stop()
            from django.db import connections

            connections.close_all()
        config.servers.stop(keep=args.keep_servers)


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
