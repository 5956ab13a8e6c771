"""Celery application shared by every split-out service's worker.

Configuration comes from Django settings under the ``CELERY_`` namespace, as in Celery's own
Django example, so one environment variable (``CELERY_BROKER_URL``) points everything at RabbitMQ.
"""

import os

from celery import Celery

from outbox.consumer.bootstep import install as install_consumer_step

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fitness.settings.local")

app = Celery("fitness")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# One worker per split-out service: `celery -A fitness worker --consume-service payments ...`
# consumes `payments.events` in the worker's main process (see outbox/consumer/bootstep.py).
install_consumer_step(app)
