"""Settings for `make run` on a developer's machine."""

from fitness.settings.base import *  # noqa: F403
from fitness.settings.base import BASE_DIR, MIDDLEWARE, env, env_bool
from fitness.settings.dev_keys import DEV_OUTBOX_SIGNING_KEYS
from outbox.logs import logging_config

DEBUG = env_bool("DJANGO_DEBUG", True)
# `make run` prints lines for people; LOG_FORMAT=json for what production prints.
LOG_FORMAT = env("LOG_FORMAT", "text")
LOGGING = logging_config(log_format=LOG_FORMAT, level=env("LOG_LEVEL", "INFO"))
# The notifications service's e-mails land as files in var/mail/ (one per message).
EMAIL_BACKEND = env("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = env("DJANGO_EMAIL_FILE_PATH", str(BASE_DIR / "var" / "mail"))
# A parcel is "delivered" a few seconds after it ships, so a demo order finishes by itself.
SHIPPING_DELIVERY_DELAY_SECONDS = float(env("SHIPPING_DELIVERY_DELAY_SECONDS", "5"))

# Static files through WhiteNoise, so gunicorn (docker-compose.yml) serves them as runserver does;
# straight from the apps' static folders, no collectstatic needed.
MIDDLEWARE = [MIDDLEWARE[0], "whitenoise.middleware.WhiteNoiseMiddleware", *MIDDLEWARE[1:]]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
# Event signing keys: public dev keys unless the environment gives real ones (docs/security.md).
OUTBOX_SIGNING_KEYS = env("OUTBOX_SIGNING_KEYS", DEV_OUTBOX_SIGNING_KEYS)
