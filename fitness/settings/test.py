"""Settings for the test suite: real PostgreSQL and RabbitMQ, fast hashing, in-memory e-mail."""

from fitness.settings.base import *  # noqa: F403
from fitness.settings.base import env
from fitness.settings.dev_keys import DEV_OUTBOX_SIGNING_KEYS

DEBUG = False
# A virtual host of the tests' own (created by `make test`), so a running `make run` with the
# same queue names never steals the tests' events, nor the other way round.
TEST_BROKER_URL = env("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/fitness_test")
CELERY_BROKER_URL = TEST_BROKER_URL
OUTBOX_BROKER_URL = env("OUTBOX_BROKER_URL", TEST_BROKER_URL)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Worker processes started by the saga tests write mails to files the test can read.
EMAIL_BACKEND = env("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
EMAIL_FILE_PATH = env("DJANGO_EMAIL_FILE_PATH", "/tmp/fitness-test-mail")
# Retries of events that wait for their predecessor: fast, so tests settle in seconds.
OUTBOX_CONSUMER_RETRY_BASE = float(env("OUTBOX_CONSUMER_RETRY_BASE", "0.2"))
OUTBOX_CONSUMER_RETRY_MAX = float(env("OUTBOX_CONSUMER_RETRY_MAX", "2"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Event signing keys: public dev keys unless the environment gives real ones (docs/security.md).
OUTBOX_SIGNING_KEYS = env("OUTBOX_SIGNING_KEYS", DEV_OUTBOX_SIGNING_KEYS)
