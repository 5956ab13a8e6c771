"""Production settings pass `check --deploy`; the admin needs staff; every form carries CSRF."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from apps.carts.services import cart_add_item
from fitness.settings.dev_keys import DEV_OUTBOX_SIGNING_KEYS
from tests.factories import make_customer, place_order_for

BASE = settings.BASE_DIR


def production_keys() -> str:
    """Fresh random signing keys for every producing service, as an operator would set them."""
    sources = ("fitness.monolith", "fitness.payments", "fitness.shipping")
    return ",".join(f"{s}:{s.split('.')[1]}-2026-11:{secrets.token_urlsafe(32)}" for s in sources)


def manage(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Run ``manage.py`` under the production settings, with ``env`` as the only DJANGO_ vars."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "USE_BROKER"))
    }
    environment.pop("OUTBOX_SIGNING_KEYS", None)
    environment.update(DJANGO_SETTINGS_MODULE="fitness.settings.production", **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- deploy checks ---------------------------------------------------------------------------


def test_check_deploy_is_clean_with_secrets_from_the_environment():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="shop.example.com",
        OUTBOX_SIGNING_KEYS=production_keys(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({}, "OUTBOX_SIGNING_KEYS must be set in production"),
        (
            {"OUTBOX_SIGNING_KEYS": DEV_OUTBOX_SIGNING_KEYS},
            "OUTBOX_SIGNING_KEYS contains a public development key",
        ),
    ],
    ids=["missing", "development-keys"],
)
def test_production_refuses_to_start_without_real_event_signing_keys(keys, message):
    result = manage(
        "check",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="x.example",
        **keys,
    )
    assert result.returncode != 0
    assert message in result.stderr


def test_check_flags_malformed_keys_and_a_producing_service_without_one():
    # a key too short to be a secret: refused, without printing it
    weak = manage(
        "check",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="x.example",
        OUTBOX_SIGNING_KEYS="fitness.monolith:m-1:tooshort",
    )
    assert "outbox.E001" in weak.stderr and "shorter than 32" in weak.stderr
    assert "tooshort" not in weak.stderr.replace("'m-1'", "")
    # shipping's key missing: its events could not be recorded by this process
    keys = ",".join(k for k in production_keys().split(",") if "shipping" not in k)
    partial = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="x.example",
        OUTBOX_SIGNING_KEYS=keys,
    )
    assert partial.returncode != 0
    assert "outbox.W001" in partial.stderr and "'fitness.shipping'" in partial.stderr


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check", DJANGO_ALLOWED_HOSTS="shop.example.com")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set in production" in result.stderr


def test_check_deploy_flags_a_weak_secret_key():
    result = manage(
        "check",
        "--deploy",
        DJANGO_SECRET_KEY="short",
        DJANGO_ALLOWED_HOSTS="shop.example.com",
        OUTBOX_SIGNING_KEYS=production_keys(),
    )
    assert "security.W009" in result.stderr + result.stdout


def test_healthz_and_metrics_are_exempt_from_the_https_redirect():
    """Container probes and Prometheus speak plain HTTP; everything else goes to HTTPS."""
    code = (
        "import django; django.setup();"
        "from django.test import Client; c = Client();"
        "print(c.get('/healthz').status_code, c.get('/metrics').status_code,"
        " c.get('/').status_code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")},
            "DJANGO_SETTINGS_MODULE": "fitness.settings.production",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
            "DJANGO_ALLOWED_HOSTS": "testserver",
            "OUTBOX_SIGNING_KEYS": production_keys(),
            # The health endpoint answers 503 on a closed port: enough to see it is not a 301.
            "OUTBOX_BROKER_URL": "amqp://guest:guest@127.0.0.1:9//",
            "OUTBOX_HEALTH_TIMEOUT": "0.5",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    healthz, metrics, home = result.stdout.split()[-3:]
    assert healthz in {"200", "503"}, result.stdout + result.stderr
    # /metrics answers even when no outbox database can be read (it leaves those series out).
    assert metrics == "200", result.stdout + result.stderr
    assert home == "301"


# --- admin behind staff login ----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/outbox/outboxmessage/", "/admin/orders/order/"]
)
def test_admin_requires_a_staff_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")

    client.force_login(make_customer())  # a customer is not staff
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")

    client.force_login(make_customer(is_staff=True, is_superuser=True))
    assert client.get(path).status_code == 200


# --- CSRF on every form ----------------------------------------------------------------------

TEMPLATE_DIRS = [
    BASE / "templates",
    *BASE.glob("apps/*/templates"),
    *BASE.glob("consumers/*/templates"),
]
TEMPLATE_DIRS += list(BASE.glob("outbox/**/templates"))
POST_FORM = re.compile(r"<form\b[^>]*method=[\"']post[\"'][^>]*>(.*?)</form>", re.S | re.I)


def template_files() -> list[Path]:
    return sorted(path for folder in TEMPLATE_DIRS for path in folder.rglob("*.html"))


def test_every_post_form_in_our_templates_has_a_csrf_token():
    forms = 0
    for path in template_files():
        for body in POST_FORM.findall(path.read_text()):
            forms += 1
            assert "{% csrf_token %}" in body, f"a POST form in {path.relative_to(BASE)}"
    assert forms >= 7  # login, register, logout, add to cart, cart lines, checkout, cancel


@pytest.fixture
def shop(customer, product):
    """A customer with a product in the cart and one order: every form page has something."""
    order = place_order_for(customer, product)
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)
    return customer, product, order


@pytest.mark.django_db
def test_every_rendered_post_form_carries_the_token(shop):
    customer, product, order = shop
    anonymous, logged_in = Client(), Client()
    logged_in.force_login(customer)
    pages = [
        (anonymous, reverse("accounts:login")),
        (anonymous, reverse("accounts:register")),
        (logged_in, reverse("catalog:product_list")),
        (logged_in, reverse("catalog:product_detail", args=[product.pk])),
        (logged_in, reverse("carts:cart_detail")),
        (logged_in, reverse("orders:checkout")),
        (logged_in, reverse("orders:order_detail", args=[order.pk])),
    ]
    seen = 0
    for client, url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        for body in POST_FORM.findall(response.content.decode()):
            seen += 1
            assert 'name="csrfmiddlewaretoken"' in body, url
    assert seen >= len(pages)


@pytest.mark.django_db
def test_posts_without_a_token_are_refused(shop):
    customer, product, order = shop
    client = Client(enforce_csrf_checks=True)
    client.force_login(customer)
    posts = [
        reverse("accounts:login"),
        reverse("accounts:register"),
        reverse("accounts:logout"),
        reverse("carts:add_item"),
        reverse("carts:update_item", args=[product.pk]),
        reverse("carts:remove_item", args=[product.pk]),
        reverse("orders:checkout"),
        reverse("orders:order_cancel", args=[order.pk]),
        "/admin/login/",
    ]
    for url in posts:
        assert client.post(url, {}).status_code == 403, url
