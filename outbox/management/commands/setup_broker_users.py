"""``manage.py setup_broker_users``: one least-privilege RabbitMQ user per process kind.

Users and permissions come from :mod:`outbox.broker_users` (relay, one per consumer service,
web); passwords from ``BROKER_PASSWORD_<KIND>`` (``--password-from-env`` makes them mandatory),
else the documented local default ``<user>-local``. Applied with ``rabbitmqctl`` on the broker's
host (passwords through standard input, never on a command line), or with the management HTTP
API (``--backend http --api-url http://admin:pass@rabbitmq:15672``), e.g. from a container.
Idempotent: an existing user gets its password and permissions reset.
"""

import base64
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from kombu.utils.url import parse_url

from outbox.broker_users import BrokerUser, local_password, plan_users
from outbox.conf import get_settings
from outbox.consumer.service import all_services
from outbox.registry import all_event_types


class RabbitmqctlBackend:
    """Runs ``rabbitmqctl`` (needs the broker's Erlang cookie: run it on the broker's host)."""

    def __init__(self) -> None:
        if shutil.which("rabbitmqctl") is None:
            raise CommandError("rabbitmqctl is not installed here: use --backend http")
        self._users: set[str] | None = None

    def _run(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            ["rabbitmqctl", "-q", *args], input=stdin, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise CommandError(f"rabbitmqctl {args[0]} failed: {result.stderr.strip()}")
        return result.stdout

    def users(self) -> set[str]:
        if self._users is None:
            rows = json.loads(self._run("list_users", "--formatter", "json"))
            self._users = {row["user"] for row in rows}
        return self._users

    def put_user(self, name: str, password: str) -> None:
        command = "change_password" if name in self.users() else "add_user"
        self._run(command, name, stdin=password)
        self.users().add(name)

    def set_permissions(self, vhost: str, user: BrokerUser) -> None:
        self._run("set_permissions", "-p", vhost, user.name, user.configure, user.write, user.read)

    def delete_user(self, name: str) -> None:
        if name in self.users():
            self._run("delete_user", name)
            self.users().discard(name)


class HttpBackend:
    """The RabbitMQ management HTTP API (``rabbitmq:3-management`` images have it on 15672)."""

    def __init__(self, api_url: str) -> None:
        parts = urlsplit(api_url)
        self.base = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}{parts.path}".rstrip(
            "/"
        )
        credentials = f"{unquote(parts.username or 'guest')}:{unquote(parts.password or 'guest')}"
        self.auth = "Basic " + base64.b64encode(credentials.encode()).decode()

    def _request(self, method: str, path: str, body: dict | None = None) -> None:
        request = urllib.request.Request(
            f"{self.base}/api/{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": self.auth, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except urllib.error.HTTPError as exc:
            if not (method == "DELETE" and exc.code == 404):
                raise CommandError(f"{method} /api/{path}: HTTP {exc.code} {exc.reason}") from exc
        except OSError as exc:
            raise CommandError(f"cannot reach the management API at {self.base}: {exc}") from exc

    def put_user(self, name: str, password: str) -> None:
        self._request("PUT", f"users/{quote(name, safe='')}", {"password": password, "tags": ""})

    def set_permissions(self, vhost: str, user: BrokerUser) -> None:
        self._request(
            "PUT",
            f"permissions/{quote(vhost, safe='')}/{quote(user.name, safe='')}",
            {"configure": user.configure, "write": user.write, "read": user.read},
        )

    def delete_user(self, name: str) -> None:
        self._request("DELETE", f"users/{quote(name, safe='')}")


def planned_users(prefix: str) -> list[BrokerUser]:
    """The users of this project (``OUTBOX_BROKER_USERS_PRODUCES`` overrides who produces what)."""
    return plan_users(
        prefix,
        all_services(),
        all_event_types(),
        produces=getattr(settings, "OUTBOX_BROKER_USERS_PRODUCES", None),
        maintenance_queue=getattr(
            settings, "OUTBOX_BROKER_USERS_MAINTENANCE_QUEUE", "celery-maintenance"
        ),
    )


def default_prefix() -> str:
    """``OUTBOX_BROKER_USERS_PREFIX`` (e.g. ``fitness-``)."""
    return str(getattr(settings, "OUTBOX_BROKER_USERS_PREFIX", ""))


class Command(BaseCommand):
    help = (
        "Create one least-privilege RabbitMQ user per process kind (relay, each service, web, "
        "beat, maintenance)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--password-from-env",
            action="store_true",
            help="require BROKER_PASSWORD_<KIND> for every user (no local default passwords)",
        )
        parser.add_argument("--vhost", help="virtual host (default: OUTBOX_BROKER_URL's)")
        parser.add_argument(
            "--prefix", help="user name prefix (default: OUTBOX_BROKER_USERS_PREFIX)"
        )
        parser.add_argument("--backend", choices=["rabbitmqctl", "http"], default="rabbitmqctl")
        parser.add_argument(
            "--api-url",
            default=os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672"),
            help="--backend http: management API URL with an administrator's credentials",
        )
        parser.add_argument("--only", action="append", help="only this kind (repeatable)")
        parser.add_argument("--delete", action="store_true", help="delete the users instead")
        parser.add_argument("--show", action="store_true", help="print the plan, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        prefix = default_prefix() if options["prefix"] is None else options["prefix"]
        vhost = options["vhost"] or parse_url(get_settings().broker_url).get("virtual_host") or "/"
        users = planned_users(prefix)
        if options["only"]:
            unknown = set(options["only"]) - {user.kind for user in users}
            if unknown:
                raise CommandError(f"unknown kinds: {', '.join(sorted(unknown))}")
            users = [user for user in users if user.kind in options["only"]]
        if options["show"]:
            self._show(users, vhost)
            return
        passwords = self._passwords(users, from_env=options["password_from_env"])
        backend = (
            HttpBackend(options["api_url"])
            if options["backend"] == "http"
            else RabbitmqctlBackend()
        )
        for user in users:
            if options["delete"]:
                backend.delete_user(user.name)
                self.stdout.write(f"deleted {user.name}")
                continue
            backend.put_user(user.name, passwords[user.name])
            backend.set_permissions(vhost, user)
            self.stdout.write(f"{user.name}: permissions on {vhost!r} set ({user.description})")

    def _passwords(self, users: list[BrokerUser], *, from_env: bool) -> dict[str, str]:
        passwords, missing = {}, []
        for user in users:
            value = os.environ.get(user.password_env, "")
            if not value and from_env:
                missing.append(user.password_env)
            passwords[user.name] = value or local_password(user.name)
        if missing:
            raise CommandError(f"--password-from-env: set {', '.join(missing)}")
        return passwords

    def _show(self, users: list[BrokerUser], vhost: str) -> None:
        self.stdout.write(f"virtual host {vhost!r}")
        self.stdout.write("| user | password variable | configure | write | read |")
        self.stdout.write("|---|---|---|---|---|")
        for user in users:
            self.stdout.write(
                f"| `{user.name}` | `{user.password_env}` | `{user.configure}` | "
                f"`{user.write}` | `{user.read}` |"
            )
