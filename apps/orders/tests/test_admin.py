"""The admin loads for a superuser: product, order and user changelists and change pages."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.factories import place_order_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    admin = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-boss-123")
    client.force_login(admin)
    return client


@pytest.fixture
def order(customer, product):
    return place_order_for(customer, product, quantity=2, delivery="express")


def test_product_admin_pages_load(staff_client, product):
    # when
    changelist = staff_client.get(reverse("admin:catalog_product_changelist"))
    change = staff_client.get(reverse("admin:catalog_product_change", args=[product.pk]))

    # then
    assert changelist.status_code == 200
    assert product.sku in changelist.content.decode()
    assert change.status_code == 200


def test_order_admin_pages_load_with_status_read_only(staff_client, order):
    # when
    changelist = staff_client.get(reverse("admin:orders_order_changelist"))
    change = staff_client.get(reverse("admin:orders_order_change", args=[order.pk]))

    # then
    assert changelist.status_code == 200
    assert change.status_code == 200
    html = change.content.decode()
    assert 'name="status"' not in html  # shown, not editable: only the saga moves it
    assert "Pending payment" in html
    assert "4222222222222" not in html


def test_user_admin_pages_load(staff_client, customer):
    # when
    changelist = staff_client.get(reverse("admin:auth_user_changelist"))
    change = staff_client.get(reverse("admin:auth_user_change", args=[customer.pk]))

    # then
    assert changelist.status_code == 200
    assert customer.username in changelist.content.decode()
    assert change.status_code == 200


def test_admin_is_closed_to_customers(client, customer):
    # given
    client.force_login(customer)

    # when
    response = client.get(reverse("admin:orders_order_changelist"))

    # then
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
