"""GET /healthz and `manage.py healthcheck` against the real PostgreSQL and RabbitMQ."""

import json
import socket

import pytest
from django.core.management import call_command
from django.db import OperationalError

from outbox import health


@pytest.fixture(autouse=True)
def fresh_cache():
    health.cache.clear()
    yield
    health.cache.clear()


@pytest.fixture
def closed_port_url() -> str:
    """A broker URL on a local port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}//"


@pytest.mark.django_db
def test_healthz_is_200_when_database_and_broker_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_healthz_is_503_naming_the_broker_when_it_is_down(client, settings, closed_port_url):
    settings.OUTBOX_BROKER_URL = closed_port_url
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error" and body["database"] == "ok"
    assert body["broker"].startswith("error: ")
    assert "127.0.0.1" not in json.dumps(body)  # no infrastructure details on a public endpoint


@pytest.mark.django_db
def test_healthz_is_503_naming_the_database_when_it_fails(client, monkeypatch):
    class Broken:
        def __enter__(self):
            raise OperationalError("connection refused")

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(health.connections["default"], "cursor", lambda: Broken())
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "database": "error: OperationalError",
        "broker": "ok",
    }


@pytest.mark.django_db
def test_healthz_result_is_cached_briefly(client, monkeypatch, settings):
    calls = []
    real = health.check_broker
    monkeypatch.setattr(health, "check_broker", lambda url: calls.append(url) or real(url))
    settings.OUTBOX_HEALTH_CACHE_SECONDS = 60
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert len(calls) == 1
    health.cache.clear()
    client.get("/healthz")
    assert len(calls) == 2


@pytest.mark.django_db
def test_healthcheck_command_relay(capsys, settings, closed_port_url):
    call_command("healthcheck", "--component", "relay")
    assert json.loads(capsys.readouterr().out)["status"] == "ok"
    settings.OUTBOX_BROKER_URL = closed_port_url
    with pytest.raises(SystemExit) as exited:
        call_command("healthcheck", "--component", "relay")
    assert exited.value.code == 1
    assert json.loads(capsys.readouterr().out)["broker"].startswith("error")


@pytest.mark.django_db(databases=["default", "payments"])
def test_healthcheck_command_worker_checks_its_queue(capsys):
    call_command("setup_broker", verbosity=0)  # idempotent; the tests' own virtual host
    capsys.readouterr()
    call_command("healthcheck", "--component", "worker", "--service", "payments")
    assert json.loads(capsys.readouterr().out) == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
    }
    assert health.check_broker(queue="no-such-queue.events").startswith("error")


@pytest.mark.django_db(transaction=True)
def test_healthcheck_command_web(live_server, capsys, closed_port_url):
    call_command("healthcheck", "--component", "web", "--url", f"{live_server.url}/healthz")
    assert json.loads(capsys.readouterr().out)["status"] == "ok"
    with pytest.raises(SystemExit):
        call_command(
            "healthcheck",
            "--component",
            "web",
            "--url",
            closed_port_url.replace("amqp://guest:guest@", "http://"),
        )
