"""Which least-privilege broker user a process connects as, when ``USE_BROKER_USERS=1``.

The settings call :func:`broker_url_for_process` with the process's command line: the relay, each
service's worker, Celery beat, the maintenance worker and the web process (runserver, gunicorn,
``healthcheck``) get their own user (created by ``manage.py setup_broker_users``, see
docs/security.md); anything else — ``setup_broker``, ``migrate``, ``replay``, a shell — keeps the
administrator's URL it was given. Passwords come from ``BROKER_PASSWORD_<KIND>``, else the
documented local default (``<user>-local``).
"""

import os
from pathlib import PurePath

from outbox.broker_users import local_password, password_env, url_with_credentials


def _option(argv: list[str], name: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


def process_kind(argv: list[str]) -> str | None:
    """``"relay"``, a service name, ``"beat"``, ``"maintenance"``, ``"web"`` or None (admin)."""
    program = PurePath(argv[0]).name if argv else ""
    if program == "gunicorn" or "runserver" in argv:
        return "web"
    if "relay_outbox" in argv:
        return "relay"
    if "consume_events" in argv:
        return _option(argv, "--service")
    if "healthcheck" in argv:
        component = _option(argv, "--component")
        return {"relay": "relay", "web": "web"}.get(component or "") or _option(argv, "--service")
    if program == "celery" or (len(argv) > 1 and argv[1] == "-m" and "celery" in argv):
        if "beat" in argv:
            return "beat"
        if "worker" in argv:
            return _option(argv, "--consume-service") or "maintenance"
    return None


def broker_url_for_process(url: str, argv: list[str], prefix: str) -> str:
    """``url`` with the credentials of this process's broker user (unchanged for admin tasks)."""
    kind = process_kind(argv)
    if kind is None:
        return url
    user = f"{prefix}{kind}"
    password = os.environ.get(password_env(kind)) or local_password(user)
    return url_with_credentials(url, user, password)
