"""The catalog over the JSON API (public: no token needed)."""

from decimal import Decimal

import pytest

from tests.api_client import ApiClient
from tests.factories import make_product

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client):
    return ApiClient(client)


def test_products_are_listed_with_price_as_a_two_decimal_string(api):
    # given
    product = make_product(name="Aaa test mat", price=Decimal("24.5"), stock=3, tags=["yoga"])

    # when
    response = api.get("/products")

    # then
    assert response.status_code == 200
    listed = {item["id"]: item for item in response.json()}
    assert listed[product.pk] == {
        "id": product.pk,
        "sku": product.sku,
        "name": "Aaa test mat",
        "description": "A product made by a test.",
        "price": "24.50",
        "stock": 3,
        "image_url": "http://testserver/static/catalog/img/yogamat.svg",
        "tags": ["yoga"],
    }


def test_the_acme_catalog_is_listed_by_name(api):
    names = [item["name"] for item in api.get("/products").json()]
    assert names
    assert names == sorted(names)


def test_products_can_be_filtered_by_tag(api):
    # given
    tagged = make_product(tags=["zz-test-tag"])
    make_product(tags=["other"])

    # when
    response = api.get("/products", tag="zz-test-tag")

    # then
    assert [item["id"] for item in response.json()] == [tagged.pk]


def test_one_product(api, product):
    response = api.get(f"/products/{product.pk}")
    assert response.status_code == 200
    assert response.json()["sku"] == product.sku


def test_an_unknown_product_is_a_json_404(api):
    response = api.get("/products/999999999")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "errors": []}


@pytest.mark.parametrize("product_id", ["abc", "0", str(2**64)])
def test_a_product_id_that_is_no_id_is_a_422(api, product_id):
    response = api.get(f"/products/{product_id}")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "product_id"
