"""Production settings: every secret from the environment, secure cookies and HSTS."""

from django.core.exceptions import ImproperlyConfigured

from fitness.settings.base import *  # noqa: F403
from fitness.settings.base import MIDDLEWARE, env, env_bool, env_list
from fitness.settings.dev_keys import DEV_SECRET_PREFIX

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set in production.")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

# Event signing keys (docs/security.md): required, and never the public ones of local/test.
OUTBOX_SIGNING_KEYS = env("OUTBOX_SIGNING_KEYS")
if not OUTBOX_SIGNING_KEYS:
    raise ImproperlyConfigured(
        "OUTBOX_SIGNING_KEYS must be set in production: <source>:<key id>:<secret>, "
        "comma-separated, one key (or two while rotating) per producing service "
        "(docs/security.md, 'Signed events')."
    )
if DEV_SECRET_PREFIX in OUTBOX_SIGNING_KEYS:
    raise ImproperlyConfigured(
        "OUTBOX_SIGNING_KEYS contains a public development key: generate real secrets "
        "(python -c 'import secrets; print(secrets.token_urlsafe(32))')."
    )

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
# Container and load-balancer health probes speak plain HTTP to the process itself.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = int(env("DJANGO_SECURE_HSTS_SECONDS", "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
EMAIL_BACKEND = env("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
# The mail server (Django's defaults are localhost:25, no login, no TLS).
EMAIL_HOST = env("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = int(env("DJANGO_EMAIL_PORT", "25"))
EMAIL_HOST_USER = env("DJANGO_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("DJANGO_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("DJANGO_EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("DJANGO_EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured(
        "DJANGO_EMAIL_USE_TLS (STARTTLS, usually port 587) and DJANGO_EMAIL_USE_SSL (implicit "
        "TLS, usually port 465) exclude each other: set one."
    )

# Static files (collected into STATIC_ROOT by `collectstatic`, see Dockerfile) served by WhiteNoise.
MIDDLEWARE = [MIDDLEWARE[0], "whitenoise.middleware.WhiteNoiseMiddleware", *MIDDLEWARE[1:]]
