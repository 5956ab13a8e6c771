"""Periodic maintenance as Celery tasks, scheduled by the project's beat (``fitness/celery.py``).

Both are idempotent and bounded, so a late, repeated or overlapping run is harmless: collecting
is insert-then-ack with unique keys, pruning deletes in bounded batches what is past retention.
"""

import logging

from celery import shared_task

from outbox.consumer.dead_letters import collect_services
from outbox.consumer.pruning import describe, prune_events
from outbox.consumer.service import all_services

logger = logging.getLogger(__name__)

COLLECT_TASK = "outbox.collect_dead_letters"
PRUNE_TASK = "outbox.prune_events"


@shared_task(name=COLLECT_TASK, ignore_result=True)
def collect_dead_letters_task() -> dict[str, int]:
    """Move every declared service's ``<service>.dead`` into the dead letters table.

    Every service is collected even when one before it fails; the failures are logged as they
    happen and then raised together, so the task shows as failed in Celery's logs and metrics.
    """
    results = collect_services(all_services())
    failed = [f"{result.service}: {result.problem}" for result in results if result.problem]
    if failed:
        raise RuntimeError("; ".join(failed))
    return {result.service: result.stored for result in results}


@shared_task(name=PRUNE_TASK, ignore_result=True)
def prune_events_task() -> list[str]:
    """Prune outbox rows, inbox entries and resolved dead letters past their retention."""
    lines = describe(prune_events())
    for line in lines:
        logger.info("prune_events: %s", line)
    return lines
