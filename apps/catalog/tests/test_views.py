"""Web pages of the catalog: the product grid, the tag filter and a product's page."""

from decimal import Decimal

import pytest
from django.urls import reverse

from tests.factories import make_product

pytestmark = pytest.mark.django_db


def test_product_list_shows_cards_with_picture_price_stock_and_add_button(client):
    # given
    make_product(name="Yoga Mat", price=Decimal("62.50"), image="yogamat", stock=100)
    make_product(name="Last Bottle", image="bottle", stock=1)
    make_product(name="Gone Pants", image="redpants", stock=0)

    # when
    response = client.get(reverse("catalog:product_list"))

    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert "Yoga Mat" in html
    assert "$62.50" in html
    assert "catalog/img/yogamat.svg" in html
    assert "In stock" in html
    assert "Only 1 left" in html
    assert "Out of stock" in html
    assert "Add to cart" in html
    assert "csrfmiddlewaretoken" in html


def test_product_list_filters_by_tag(client):
    # given
    make_product(name="Yoga Mat", tags=["mat"])
    make_product(name="Fit Bike", tags=["bicycle"])

    # when
    response = client.get(reverse("catalog:product_list"), {"tag": "mat"})

    # then
    html = response.content.decode()
    assert "Yoga Mat" in html
    assert "Fit Bike" not in html


def test_product_list_header_shows_cart_count_of_signed_in_customer(client, customer, product):
    # given
    from apps.carts.services import cart_add_item

    cart_add_item(customer=customer, product_id=product.pk, quantity=3)
    client.force_login(customer)

    # when
    response = client.get(reverse("catalog:product_list"))

    # then
    assert response.context["cart_count"] == 3
    assert 'data-testid="cart-count">3<' in response.content.decode()


def test_product_detail_shows_description_price_stock_and_quantity(client):
    # given
    product = make_product(
        name="Smart Watch", description="Tracks your heart.", price=Decimal("399.59"), stock=40
    )

    # when
    response = client.get(reverse("catalog:product_detail", args=[product.pk]))

    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert "Smart Watch" in html
    assert "Tracks your heart." in html
    assert "$399.59" in html
    assert "40 available" in html
    assert 'name="quantity"' in html


def test_product_detail_of_unknown_product_is_404(client):
    # when
    response = client.get(reverse("catalog:product_detail", args=[999_999]))

    # then
    assert response.status_code == 404


def test_every_catalog_picture_exists():
    # given
    from django.contrib.staticfiles import finders

    names = ["yogamat", "bottle", "bicycle", "basketball", "smartwatch", "redpants", "shoes"]

    # then
    for name in [*names, "weights"]:
        assert finders.find(f"catalog/img/{name}.svg"), name
