"""Least-privilege broker users, proved on the real RabbitMQ (the tests' virtual host)."""

import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import uuid

import amqp
import pytest
from django.conf import settings
from django.core.management import call_command
from kombu.utils.url import parse_url

from fitness.broker_identity import broker_url_for_process, process_kind
from outbox.broker import connect
from outbox.broker_users import local_password, password_env, url_with_credentials
from outbox.conf import get_settings
from outbox.consumer.service import all_services
from outbox.management.commands.setup_broker_users import planned_users

PROBE = "test.permissions.probe"  # a routing key nothing is bound to: the message is dropped


@pytest.fixture(scope="module")
def users(django_db_blocker):
    """Real users (unique prefix) for relay, payments, shipping and web; deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    kinds = ["--only", "relay", "--only", "payments", "--only", "shipping", "--only", "web"]
    with django_db_blocker.unblock():
        call_command("setup_broker", verbosity=0)  # idempotent, as an administrator
        call_command("setup_broker_users", "--prefix", prefix, *kinds)
    try:
        yield prefix
    finally:
        call_command("setup_broker_users", "--prefix", prefix, "--delete", *kinds)


def connect_as(prefix: str, kind: str) -> amqp.Connection:
    name = f"{prefix}{kind}"
    return connect(url_with_credentials(get_settings().broker_url, name, local_password(name)))


def publish(connection: amqp.Connection, exchange: str) -> None:
    """Publish one message with a confirm; raises AccessRefused when not allowed."""
    channel = connection.channel()
    channel.basic_publish_confirm(
        amqp.Message(b"{}"), exchange=exchange, routing_key=PROBE, confirm_timeout=10
    )
    channel.close()


def read(connection: amqp.Connection, queue: str) -> None:
    """Exercise read permission; a message taken by chance is given straight back."""
    channel = connection.channel()
    message = channel.basic_get(queue, no_ack=False)
    if message is not None:
        channel.basic_reject(message.delivery_tag, requeue=True)
    channel.close()


def test_payments_user_reads_its_queue_and_publishes_to_its_exchange_only(users):
    connection = connect_as(users, "payments")
    try:
        read(connection, "payments.events")
        read(connection, "payments.dead")
        publish(connection, "fitness.payments")
        publish(connection, "payments.dlx")  # dead-letter copies
        publish(connection, "")  # retry copies go through the default exchange
        with pytest.raises(amqp.exceptions.AccessRefused, match=r"fitness\.orders"):
            publish(connection, "fitness.orders")
        with pytest.raises(amqp.exceptions.AccessRefused, match=r"shipping\.events"):
            read(connection, "shipping.events")
        with pytest.raises(amqp.exceptions.AccessRefused, match=r"shipping\.dlx"):
            publish(connection, "shipping.dlx")
        with pytest.raises(amqp.exceptions.AccessRefused):  # no foreign queue declarations
            connection.channel().queue_declare(f"{users}stray", auto_delete=True)
    finally:
        connection.close()


def test_relay_user_publishes_to_every_producer_exchange_and_reads_nothing(users):
    connection = connect_as(users, "relay")
    try:
        for exchange in ("fitness.orders", "fitness.payments", "fitness.shipping"):
            publish(connection, exchange)
        with pytest.raises(amqp.exceptions.AccessRefused):
            read(connection, "payments.events")
        with pytest.raises(amqp.exceptions.AccessRefused):
            publish(connection, "payments.dlx")
        with pytest.raises(amqp.exceptions.AccessRefused):
            connection.channel().queue_declare(f"{users}stray", auto_delete=True)
    finally:
        connection.close()


def test_web_user_may_not_publish_events(users):
    connection = connect_as(users, "web")
    try:
        connection.channel().queue_declare("payments.events", passive=True)  # health probe
        with pytest.raises(amqp.exceptions.AccessRefused):
            publish(connection, "fitness.orders")
    finally:
        connection.close()


def test_wrong_password_is_refused(users):
    url = url_with_credentials(get_settings().broker_url, f"{users}payments", "wrong")
    with pytest.raises(amqp.exceptions.AccessRefused):
        connect(url)


def test_plan_covers_every_service_and_no_foreign_names():
    users = {user.kind: user for user in planned_users("fitness-")}
    assert {"relay", "web", "payments", "shipping", "notifications", "orders"} <= set(users)
    payments = users["payments"]
    for name in ("payments.events", "payments.dead", "payments.retry.3", "celery-payments"):
        assert re.fullmatch(payments.read, name), name
    for name in ("shipping.events", "payments.eventsX", "celery-shipping", "orders.dead"):
        assert not re.fullmatch(payments.read, name), name
    assert re.fullmatch(payments.write, "fitness.payments")
    assert not re.fullmatch(payments.write, "fitness.orders")
    assert re.fullmatch(users["orders"].write, "fitness.orders")
    assert users["notifications"].write.count("fitness.") == 0  # produces nothing
    assert users["relay"].configure == users["relay"].read == "^$"
    assert re.fullmatch(users["web"].read, "payments.dead")  # the admin collects dead letters
    assert not re.fullmatch(users["web"].read, "payments.events")
    assert re.fullmatch(users["maintenance"].read, "shipping.dead")
    assert re.fullmatch(users["beat"].write, "celery-maintenance")
    assert payments.password_env == password_env("payments") == "BROKER_PASSWORD_PAYMENTS"


def test_password_from_env_is_required_when_asked(monkeypatch):
    monkeypatch.delenv("BROKER_PASSWORD_RELAY", raising=False)
    with pytest.raises(Exception, match="BROKER_PASSWORD_RELAY"):
        call_command("setup_broker_users", "--only", "relay", "--password-from-env")


def test_http_backend_puts_users_and_permissions(monkeypatch):
    """The management-API backend (used from containers), against a recording fake server."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append((self.command, self.path, body, self.headers["Authorization"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("BROKER_PASSWORD_PAYMENTS", "s3cret")
    try:
        call_command(
            "setup_broker_users",
            "--backend",
            "http",
            "--api-url",
            f"http://admin:pw@127.0.0.1:{server.server_port}",
            "--prefix",
            "fitness-",
            "--only",
            "payments",
            "--vhost",
            "/",
        )
    finally:
        server.shutdown()
    (m1, path1, body1, auth), (m2, path2, body2, _) = requests
    assert (m1, path1, body1) == (
        "PUT",
        "/api/users/fitness-payments",
        {"password": "s3cret", "tags": ""},
    )
    assert auth == "Basic YWRtaW46cHc="  # admin:pw
    assert (m2, path2) == ("PUT", "/api/permissions/%2F/fitness-payments")
    assert set(body2) == {"configure", "write", "read"}


def test_url_with_credentials_keeps_host_port_and_vhost():
    url = url_with_credentials("amqp://guest:guest@broker:5673/fitness", "u@x", "p:w")
    assert url == "amqp://u%40x:p%3Aw@broker:5673/fitness"
    assert parse_url(url)["userid"] == "u@x"


def procfile() -> dict[str, list[str]]:
    lines = (settings.BASE_DIR / "Procfile").read_text().splitlines()
    return {
        name.strip(): shlex.split(command.split("&&")[-1])
        for name, command in (line.split(":", 1) for line in lines if line.strip())
    }


def test_each_procfile_process_connects_as_its_own_user():
    """USE_BROKER_USERS=1: the command line decides the user (fitness/broker_identity.py)."""
    services = {service.name for service in all_services()}
    for name, argv in procfile().items():
        argv = ["/venv/bin/" + argv[0], *argv[1:]] if argv[0] == "celery" else argv
        kind = process_kind(argv)
        if name == "shipping_clock":
            assert kind is None  # database only
        elif name in services:
            assert kind == name
        else:
            assert kind == name, (name, argv)
    assert process_kind(["manage.py", "setup_broker"]) is None  # administrator's URL
    assert process_kind(["gunicorn", "fitness.wsgi"]) == "web"
    assert process_kind(["manage.py", "consume_events", "--service", "payments"]) == "payments"
    assert process_kind(["manage.py", "healthcheck", "--component", "worker", "--service=x"]) == "x"


def test_broker_url_for_process(monkeypatch):
    url = "amqp://guest:guest@rabbitmq:5672/"
    monkeypatch.setenv("BROKER_PASSWORD_RELAY", "r3lay")
    relay = broker_url_for_process(url, ["manage.py", "relay_outbox"], "fitness-")
    assert relay == "amqp://fitness-relay:r3lay@rabbitmq:5672/"
    web = broker_url_for_process(url, ["manage.py", "runserver"], "fitness-")
    assert web == "amqp://fitness-web:fitness-web-local@rabbitmq:5672/"
    assert broker_url_for_process(url, ["manage.py", "migrate"], "fitness-") == url


def test_use_broker_users_switches_both_urls_and_celerys_environment_variable():
    """Celery prefers CELERY_BROKER_URL from the environment: the settings update it too."""
    code = (
        "import os, sys;"
        "sys.argv = ['/venv/bin/celery', '-A', 'fitness', 'worker',"
        " '--consume-service', 'payments'];"
        "from django.conf import settings;"
        "print(settings.CELERY_BROKER_URL, settings.OUTBOX_BROKER_URL,"
        " os.environ['CELERY_BROKER_URL'])"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "fitness.settings.local",
        "USE_BROKER_USERS": "1",
        "CELERY_BROKER_URL": "amqp://guest:guest@rabbitmq:5672//",
        "BROKER_PASSWORD_PAYMENTS": "pw",
    }
    env.pop("OUTBOX_BROKER_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    expected = "amqp://fitness-payments:pw@rabbitmq:5672//"
    assert result.stdout.split() == [expected] * 3, result.stderr
