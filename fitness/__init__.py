"""The ACME Fitness Django project: settings, URLs, WSGI/ASGI and Celery wiring."""

from fitness.celery import app as celery_app

__all__ = ("celery_app",)
