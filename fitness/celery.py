"""Celery application shared by every split-out service's worker.

Configuration comes from Django settings under the ``CELERY_`` namespace, as in Celery's own
Django example, so one environment variable (``CELERY_BROKER_URL``) points everything at RabbitMQ.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fitness.settings.local")

app = Celery("fitness")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
