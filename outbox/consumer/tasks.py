"""Periodic maintenance as Celery tasks, scheduled by the project's beat (``fitness/celery.py``).

Both are idempotent and bounded, so a late, repeated or overlapping run is harmless: collecting
is insert-then-ack with unique keys, pruning deletes in bounded batches what is past retention.
"""

import logging

from celery import shared_task

from outbox.consumer.dead_letters import collect
from outbox.consumer.pruning import describe, prune_events
from outbox.consumer.service import all_services

logger = logging.getLogger(__name__)

COLLECT_TASK = "outbox.collect_dead_letters"
PRUNE_TASK = "outbox.prune_events"


@shared_task(name=COLLECT_TASK, ignore_result=True)
def collect_dead_letters_task() -> dict[str, int]:
    """Move every declared service's ``<service>.dead`` into the dead letters table."""
    stored: dict[str, int] = {}
    failed = []
    for service in all_services():
        result = collect(service)
        stored[service.name] = result.stored
        if result.error:
            failed.append(f"{service.name}: {result.error}")
    if failed:  # every service was tried; fail the task so it shows in Celery's logs
        raise RuntimeError("; ".join(failed))
    return stored


@shared_task(name=PRUNE_TASK, ignore_result=True)
def prune_events_task() -> list[str]:
    """Prune outbox rows, inbox entries and resolved dead letters past their retention."""
    lines = describe(prune_events())
    for line in lines:
        logger.info("prune_events: %s", line)
    return lines
