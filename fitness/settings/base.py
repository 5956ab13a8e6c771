"""Settings shared by every environment, driven by environment variables.

Only what differs between environments lives in ``local``, ``test`` and ``production``.
"""

import os
import sys
from pathlib import Path

import dj_database_url

from outbox.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env(name: str, default: str = "") -> str:
    """Return an environment variable, or ``default`` when it is unset or empty."""
    return os.environ.get(name) or default


def env_bool(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable ("1", "true", "yes", "on" are true)."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    """Read a comma-separated environment variable as a list of non-empty items."""
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


SECRET_KEY = env("DJANGO_SECRET_KEY", "insecure-dev-key-change-me")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")

DJANGO_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
]
THIRD_PARTY_APPS = ["ninja"]  # serves /api/docs assets locally (no CDN)
LOCAL_APPS = [
    "outbox",
    "outbox.consumer",
    "apps.accounts",
    "apps.catalog",
    "apps.carts",
    "apps.orders",
    "consumers.payments",
    "consumers.shipping",
    "consumers.notifications",
    "consumers.analytics",
]
INSTALLED_APPS = DJANGO_APPS + THIRD_PARTY_APPS + LOCAL_APPS

# Request metrics (django-prometheus): "Before" first and "After" last, so they time the whole
# stack. TraceMiddleware: each request runs in a W3C trace span that its events carry on.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "outbox.middleware.TraceMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "fitness.urls"
WSGI_APPLICATION = "fitness.wsgi.application"
ASGI_APPLICATION = "fitness.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.carts.context_processors.cart_summary",
            ],
        },
    },
]

DATABASE_URL = env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fitness")
# Connections are kept between requests for DJANGO_CONN_MAX_AGE seconds, and checked (one
# round trip, once per request) before they are reused: after a PostgreSQL restart the first
# request of every thread would otherwise fail with a 500 on the dead connection.
CONN_MAX_AGE = int(env("DJANGO_CONN_MAX_AGE", "60"))


# A database server that vanishes without closing its connections (a host lost, a network cut)
# would leave a process waiting on a dead socket for as long as the kernel's defaults allow
# (hours): the relay would sit on its partition leases, a worker on its messages. TCP keepalives
# and tcp_user_timeout make libpq notice within about a minute: the query fails, the process
# reconnects. Seconds; DJANGO_DB_KEEPALIVE_IDLE=0 turns keepalives off.
DB_KEEPALIVE_IDLE = int(env("DJANGO_DB_KEEPALIVE_IDLE", "30"))


def _database(url: str) -> dict:
    database = dj_database_url.parse(url, conn_max_age=CONN_MAX_AGE, conn_health_checks=True)
    if DB_KEEPALIVE_IDLE > 0:
        database.setdefault("OPTIONS", {}).update(
            {
                "keepalives": 1,
                "keepalives_idle": DB_KEEPALIVE_IDLE,
                "keepalives_interval": 10,
                "keepalives_count": 3,
                # data sent and not acknowledged for this long: the connection is dead (ms)
                "tcp_user_timeout": (DB_KEEPALIVE_IDLE + 30) * 1000,
            }
        )
    return database


DATABASES = {"default": _database(DATABASE_URL)}
# Parallel test runs (several developers or CI jobs on one server) pick their own test database.
if env("TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME")}
# Each split-out service can have a database of its own (``PAYMENTS_DATABASE_URL``...); by
# default it is the main one, reached through a connection of its own (see fitness/routers.py).
SERVICE_DATABASES = {
    "payments": "payments",
    "shipping": "shipping",
    "notifications": "notifications",
    "analytics": "analytics",
}
SHARED_DATABASE_ALIASES = {"default"}
for _service, _alias in SERVICE_DATABASES.items():
    _url = env(f"{_service.upper()}_DATABASE_URL", DATABASE_URL)
    DATABASES[_alias] = _database(_url)
    if _url == DATABASE_URL:
        SHARED_DATABASE_ALIASES.add(_alias)
        if env("TEST_DATABASE_NAME"):
            DATABASES[_alias]["TEST"] = {"NAME": env("TEST_DATABASE_NAME")}
MONOLITH_APP_LABELS = {"accounts", "catalog", "carts", "orders"}
DATABASE_ROUTERS = ["fitness.routers.ServiceDatabaseRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "catalog:product_list"
LOGOUT_REDIRECT_URL = "catalog:product_list"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "ACME Fitness <shop@acmefitness.com>")
# Seconds the SMTP backend waits on the mail server (connect, each reply). Django's default is
# none: a server that accepts and never answers would hold the notifications worker, its inbox
# row and its order lock forever; with a timeout the send fails and the event is retried later.
EMAIL_TIMEOUT = float(env("DJANGO_EMAIL_TIMEOUT", "10"))

# --- Messaging -------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
# AMQP heartbeats (seconds): how soon the broker notices a hung worker and hands its
# unacknowledged deliveries to another consumer. Celery's own default is 120 s.
CELERY_BROKER_HEARTBEAT = float(env("CELERY_BROKER_HEARTBEAT", "120"))
OUTBOX_CONSUMER_HEARTBEAT = float(env("OUTBOX_CONSUMER_HEARTBEAT", "60"))
# Services that accept messages sent by django-outbox-pattern while producers switch over
# (docs/migrating-from-django-outbox-pattern.md); empty = every service dead-letters them.
OUTBOX_CONSUMER_ACCEPT_OUTBOX_PATTERN = env_list("OUTBOX_CONSUMER_ACCEPT_OUTBOX_PATTERN")

# The service name this process publishes as (CloudEvents ``source``) and the outbox settings.
OUTBOX_SOURCE = env("OUTBOX_SOURCE", "fitness.monolith")
OUTBOX_BROKER_URL = env("OUTBOX_BROKER_URL", CELERY_BROKER_URL)
# Simulated carrier: a dispatched parcel is delivered this many seconds later (0 = at once).
SHIPPING_DELIVERY_DELAY_SECONDS = float(env("SHIPPING_DELIVERY_DELAY_SECONDS", "0"))

# One JSON object per line (event id, type, correlation id, service, trace id on every line about
# an event; docs/operations.md), or LOG_FORMAT=text for people (the default of `make run`).
LOG_FORMAT = env("LOG_FORMAT", "json")
LOGGING = logging_config(log_format=LOG_FORMAT, level=env("LOG_LEVEL", "INFO"))

# --- Outbox relay (see docs/outbox.md) ---------------------------------------------------------
OUTBOX_PARTITIONS = int(env("OUTBOX_PARTITIONS", "16"))
OUTBOX_BATCH_SIZE = int(env("OUTBOX_BATCH_SIZE", "500"))
OUTBOX_MAX_IN_FLIGHT = int(env("OUTBOX_MAX_IN_FLIGHT", "1500"))
OUTBOX_POLL_INTERVAL = float(env("OUTBOX_POLL_INTERVAL", "1.0"))
OUTBOX_MAX_ATTEMPTS = int(env("OUTBOX_MAX_ATTEMPTS", "10"))
OUTBOX_BACKOFF_BASE = float(env("OUTBOX_BACKOFF_BASE", "1.0"))
OUTBOX_BACKOFF_MAX = float(env("OUTBOX_BACKOFF_MAX", "300"))
OUTBOX_MAX_MESSAGE_BYTES = int(env("OUTBOX_MAX_MESSAGE_BYTES", str(1024 * 1024)))
OUTBOX_CONFIRM_TIMEOUT = float(env("OUTBOX_CONFIRM_TIMEOUT", "30"))
OUTBOX_CONNECT_TIMEOUT = float(env("OUTBOX_CONNECT_TIMEOUT", "5"))
OUTBOX_RECONNECT_MAX_DELAY = float(env("OUTBOX_RECONNECT_MAX_DELAY", "30"))
OUTBOX_LEASE_INTERVAL = float(env("OUTBOX_LEASE_INTERVAL", "2"))
# Whose outbox table GET /metrics reports (default: every alias with a database of its own).
if env("OUTBOX_METRICS_DATABASES"):
    OUTBOX_METRICS_DATABASES = env_list("OUTBOX_METRICS_DATABASES")

# --- Event signing (see docs/security.md) -------------------------------------------------------
# `<source>:<key id>:<secret>` entries, comma-separated: every key listed verifies; each source
# signs with the first of its own. No default here: local and test settings use public dev keys,
# production refuses to start without real ones.
OUTBOX_SIGNING_KEYS = env("OUTBOX_SIGNING_KEYS")

# --- Retention, pruning and dead letters (see docs/dead-letters.md) ----------------------------
# Published outbox rows are kept (and replayable) this long; the inbox keeps entries longer
# (default: + 7 days; never less than + 1 day, checked at start-up by outbox.retention).
OUTBOX_RETENTION_DAYS = float(env("OUTBOX_RETENTION_DAYS", "30"))
OUTBOX_INBOX_RETENTION_DAYS = float(env("OUTBOX_INBOX_RETENTION_DAYS") or 0) or None
OUTBOX_DEAD_LETTER_RETENTION_DAYS = float(env("OUTBOX_DEAD_LETTER_RETENTION_DAYS", "30"))
OUTBOX_PRUNE_BATCH_SIZE = int(env("OUTBOX_PRUNE_BATCH_SIZE", "5000"))
OUTBOX_PRUNE_MAX_BATCHES = int(env("OUTBOX_PRUNE_MAX_BATCHES", "200"))
# Prune walks occurred_at, so record_event refuses an occurred_at more than this many seconds
# ahead of the recording process's clock (docs/outbox.md); past times (imports) are accepted.
OUTBOX_MAX_FUTURE_SKEW = float(env("OUTBOX_MAX_FUTURE_SKEW", "300"))
# How often Celery beat collects dead letters and prunes: OUTBOX_COLLECT_DEAD_LETTERS_EVERY (60 s)
# and OUTBOX_PRUNE_EVERY (3600 s), read from the environment by fitness/celery.py.

# --- Event contracts (docs/asyncapi.json, docs/event-contracts.lock.json) -----------------------
# `python manage.py asyncapi` documents these servers; `check_event_contracts` reads the lock.
OUTBOX_ASYNCAPI = {
    "title": "ACME Fitness integration events",
    "version": "1.0.0",
    "description": (
        "Every event the shop's services publish through their transactional outboxes: one "
        "durable topic exchange per producing service (routing key = event type), one durable "
        "quorum queue per consuming service. CloudEvents 1.0 in binary mode: JSON body = "
        "payload, envelope in `ce-*` AMQP headers."
    ),
    "servers": {
        "local": {
            "host": "127.0.0.1:5672",
            "protocol": "amqp",
            "protocolVersion": "0-9-1",
            "pathname": "/",
            "description": "RabbitMQ of `make run` (default virtual host).",
        },
        "compose": {
            "host": "rabbitmq:5672",
            "protocol": "amqp",
            "protocolVersion": "0-9-1",
            "pathname": "/",
            "description": "RabbitMQ inside `docker compose` (service `rabbitmq`).",
        },
    },
}
OUTBOX_CONTRACTS_LOCK = BASE_DIR / "docs" / "event-contracts.lock.json"

# --- Least-privilege broker users (docs/security.md) --------------------------------------------
# `manage.py setup_broker_users` creates `fitness-relay`, `fitness-<service>`, `fitness-web`...;
# with USE_BROKER_USERS=1 each process connects as its own user (fitness/broker_identity.py).
OUTBOX_BROKER_USERS_PREFIX = env("BROKER_USERS_PREFIX", "fitness-")
USE_BROKER_USERS = env_bool("USE_BROKER_USERS", False)
if USE_BROKER_USERS:
    from fitness.broker_identity import broker_url_for_process

    CELERY_BROKER_URL = broker_url_for_process(
        CELERY_BROKER_URL, sys.argv, OUTBOX_BROKER_USERS_PREFIX
    )
    # Celery reads CELERY_BROKER_URL from the environment before its configuration.
    os.environ["CELERY_BROKER_URL"] = CELERY_BROKER_URL
    OUTBOX_BROKER_URL = broker_url_for_process(
        OUTBOX_BROKER_URL, sys.argv, OUTBOX_BROKER_USERS_PREFIX
    )
