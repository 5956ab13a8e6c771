"""Health checks of a process's dependencies: its database(s) and the broker.

- :func:`healthz` — the Django view behind ``GET /healthz``: 200 ``{"status": "ok", "database":
  "ok", "broker": "ok"}``, or 503 naming what failed. Results are cached for
  ``OUTBOX_HEALTH_CACHE_SECONDS`` (default 2 s) per process, so a load balancer polling every
  second costs at most one ``SELECT 1`` and one AMQP handshake per interval.
- ``manage.py healthcheck --component relay|worker|web`` (container healthchecks) runs the same
  checks for a relay (its database + broker), a worker (its service's database + broker + its
  queue) or the web process (``GET /healthz`` over HTTP).

Failures are reported by exception class only (``"error: ConnectionRefusedError"``): the endpoint
is public, so host names and credentials stay in the logs.
"""

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from outbox.broker import close_quietly, connect
from outbox.conf import get_settings

logger = logging.getLogger(__name__)

OK = "ok"


def _error(exc: BaseException) -> str:
    return f"error: {type(exc).__name__}"


def check_database(alias: str = "default") -> str:
    """``"ok"`` when ``SELECT 1`` answers on database ``alias``, else ``"error: <class>"``."""
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure is "unhealthy"; the details go to the log
        logger.warning("health: database %s: %s", alias, exc)
        # A broken connection must not stay in this thread for the next request.
        connections[alias].close_if_unusable_or_obsolete()
        return _error(exc)
    return OK


def check_broker(url: str | None = None, *, timeout: float | None = None, queue: str = "") -> str:
    """``"ok"`` when an AMQP connection to ``url`` opens (and ``queue`` exists, if given)."""
    url = url or get_settings().broker_url
    timeout = timeout if timeout is not None else health_timeout()
    connection = None
    try:
        connection = connect(url, connect_timeout=timeout)
        if queue:
            # A passive declare needs no permission and fails when the queue is missing.
            connection.channel().queue_declare(queue, passive=True)
    except Exception as exc:
        logger.warning("health: broker%s: %s", f" (queue {queue})" if queue else "", exc)
        return _error(exc)
    finally:
        close_quietly(connection)
    return OK


def health_timeout() -> float:
    """Seconds a broker check may take (``OUTBOX_HEALTH_TIMEOUT``, default 2)."""
    return float(getattr(settings, "OUTBOX_HEALTH_TIMEOUT", 2.0))


def overall(results: dict[str, str]) -> dict[str, str]:
    """``results`` with ``status`` first: ``"ok"`` when every check is ok, else ``"error"``."""
    status = OK if all(value == OK for value in results.values()) else "error"
    return {"status": status, **results}


class _Cache:
    """A per-process, thread-safe memo of the last result, valid for a second or two."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: tuple[float, object, dict[str, str]] | None = None

    def get(self, key: object, ttl: float, compute: Callable[[], dict[str, str]]) -> dict[str, str]:
        with self._lock:
            now = time.monotonic()
            if self._value and self._value[1] == key and now < self._value[0]:
                return self._value[2]
            value = compute()
            self._value = (now + ttl, key, value)
            return value

    def clear(self) -> None:
        with self._lock:
            self._value = None


cache = _Cache()


def web_health() -> dict[str, str]:
    """The checks of ``/healthz``: the default database and the outbox's broker (cached)."""
    url = get_settings().broker_url
    ttl = float(getattr(settings, "OUTBOX_HEALTH_CACHE_SECONDS", 2.0))
    return cache.get(
        ("web", url),
        ttl,
        lambda: overall({"database": check_database("default"), "broker": check_broker(url)}),
    )


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """``GET /healthz``: 200 when the database and the broker answer, 503 otherwise."""
    result = web_health()
    return JsonResponse(result, status=200 if result["status"] == OK else 503)
