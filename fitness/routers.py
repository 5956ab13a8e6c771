"""Database routing: each split-out service's tables live in that service's own database.

``SERVICE_DATABASES`` maps an app label (``payments``) to a database alias. By default every
alias points at the main database (one PostgreSQL is enough for `make run`), but it is still a
separate connection, so a service's transaction only ever spans its own tables, its inbox and its
outbox — exactly as when ``PAYMENTS_DATABASE_URL`` points somewhere else.
"""

from typing import Any

from django.conf import settings


def _database_group(alias: str) -> str:
    """``default`` for every alias that shares the main database, else the alias itself.

    Decided from the configured URLs (``SHARED_DATABASE_ALIASES``), not from live connection
    settings, because the test runner renames databases while it migrates them.
    """
    return "default" if alias in settings.SHARED_DATABASE_ALIASES else alias


class ServiceDatabaseRouter:
    """Send each service app's models to its alias; keep the monolith's apps on ``default``."""

    def _alias_for(self, app_label: str) -> str | None:
        return settings.SERVICE_DATABASES.get(app_label)

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        return self._alias_for(model._meta.app_label)

    def db_for_write(self, model: type, **hints: Any) -> str | None:
        return self._alias_for(model._meta.app_label)

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        alias = self._alias_for(app_label)
        if alias is not None:
            return _database_group(db) == _database_group(alias)
        if app_label in settings.MONOLITH_APP_LABELS:
            return _database_group(db) == "default"
        # Django's own apps, the outbox and the inbox exist in every database.
        return None
