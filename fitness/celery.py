"""Celery application shared by every split-out service's worker.

Configuration comes from Django settings under the ``CELERY_`` namespace, as in Celery's own
Django example, so one environment variable (``CELERY_BROKER_URL``) points everything at RabbitMQ.
"""

import os

from celery import Celery
from celery.signals import setup_logging

from outbox.consumer.bootstep import install as install_consumer_step

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fitness.settings.local")

app = Celery("fitness")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# One worker per split-out service: `celery -A fitness worker --consume-service payments ...`
# consumes `payments.events` in the worker's main process (see outbox/consumer/bootstep.py).
install_consumer_step(app)


@setup_logging.connect
def use_django_logging(loglevel: int | str | None = None, **kwargs: object) -> None:
    """Keep Django's ``LOGGING`` (JSON or text, with event and trace fields) in the workers.

    Connecting this signal tells Celery not to install its own handlers and format. The level
    is the worker's ``--loglevel`` (Celery passes its default, WARNING, when none is given).
    """
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


# Maintenance, on a schedule (`celery -A fitness beat`, the `beat:` line of the Procfile), run by
# the `maintenance:` worker (`-Q celery-maintenance`) so it never waits behind a service's tasks.
# Both tasks are idempotent and bounded; `expires` drops runs that waited longer than one period
# (a worker that was down does not replay a backlog of identical runs).
MAINTENANCE_QUEUE = "celery-maintenance"
_collect_every = float(os.environ.get("OUTBOX_COLLECT_DEAD_LETTERS_EVERY") or 60)
_prune_every = float(os.environ.get("OUTBOX_PRUNE_EVERY") or 3600)
app.conf.task_routes = {"outbox.*": {"queue": MAINTENANCE_QUEUE}}
app.conf.beat_schedule = {
    "collect-dead-letters": {
        "task": "outbox.collect_dead_letters",
        "schedule": _collect_every,
        "options": {"expires": _collect_every},
    },
    "prune-events": {
        "task": "outbox.prune_events",
        "schedule": _prune_every,
        "options": {"expires": _prune_every},
    },
}
