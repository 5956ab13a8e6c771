"""Event signing keys for `make run` and the tests only — public, so never valid in production.

``fitness.settings.production`` refuses any secret starting with :data:`DEV_SECRET_PREFIX`.
"""

DEV_SECRET_PREFIX = "insecure-dev-only-"

# One key per producing service (``<source>:<key id>:<secret>``, see docs/security.md).
DEV_OUTBOX_SIGNING_KEYS = ",".join(
    f"{source}:dev-{source.split('.')[-1]}-1:{DEV_SECRET_PREFIX}{source}-signing-key"
    for source in ("fitness.monolith", "fitness.payments", "fitness.shipping")
)
