"""A minimal Django project for django-outbox-pattern, the benchmark's peer (bench/dop.py).

Its own settings and database, so the shop never imports the package: only
``django_outbox_pattern`` is installed, on ``DOP_DATABASE_URL``, publishing over STOMP to the
local RabbitMQ with the package's defaults (no receipts, no ``persistent`` header).
"""

import os

import dj_database_url

SECRET_KEY = "bench-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django_outbox_pattern"]
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DOP_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fitness_bench_dop")
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DJANGO_OUTBOX_PATTERN = {
    "DEFAULT_STOMP_HOST_AND_PORTS": [("127.0.0.1", int(os.environ.get("DOP_STOMP_PORT", "61613")))],
    "DEFAULT_STOMP_USERNAME": "guest",
    "DEFAULT_STOMP_PASSCODE": "guest",
    "DEFAULT_STOMP_VHOST": os.environ.get("DOP_STOMP_VHOST", "/"),
}
