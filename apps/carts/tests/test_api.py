"""The cart over the JSON API: only ever the caller's own, and bad input changes nothing."""

from decimal import Decimal

import pytest

from apps.carts.models import CartItem
from apps.carts.services import cart_add_item
from tests.api_client import ApiClient, error_fields
from tests.factories import make_product

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client, customer):
    return ApiClient(client).login_as(customer)


def quantities(customer) -> dict[int, int]:
    return dict(
        CartItem.objects.filter(cart__customer=customer).values_list("product_id", "quantity")
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/cart", None),
        ("post", "/cart/items", {"product_id": 1, "quantity": 1}),
        ("patch", "/cart/items/1", {"quantity": 1}),
        ("delete", "/cart/items/1", None),
    ],
)
def test_every_cart_endpoint_needs_a_token(client, method, path, body):
    # given no token
    api = ApiClient(client)

    # when
    response = getattr(api, method)(path, body) if body else getattr(api, method)(path)

    # then
    assert response.status_code == 401
    assert response.json()["errors"] == []


def test_an_empty_cart(api):
    response = api.get("/cart")
    assert response.status_code == 200
    assert response.json() == {"items": [], "item_count": 0, "subtotal": "0.00"}


def test_adding_a_product_returns_the_cart_with_201(api, customer):
    # given
    product = make_product(price=Decimal("12.50"), stock=5)

    # when
    response = api.post("/cart/items", {"product_id": product.pk, "quantity": 2})

    # then
    assert response.status_code == 201
    assert response.json() == {
        "items": [
            {
                "product_id": product.pk,
                "sku": product.sku,
                "name": product.name,
                "unit_price": "12.50",
                "quantity": 2,
                "line_total": "25.00",
            }
        ],
        "item_count": 2,
        "subtotal": "25.00",
    }
    assert quantities(customer) == {product.pk: 2}


def test_quantity_defaults_to_one_and_adds_up(api, customer, product):
    api.post("/cart/items", {"product_id": product.pk})
    response = api.post("/cart/items", {"product_id": product.pk})
    assert response.json()["item_count"] == 2
    assert quantities(customer) == {product.pk: 2}


@pytest.mark.parametrize(
    "quantity",
    [0, -1, 11, 2.5, "2", "two", True, None],
    ids=["zero", "negative", "over stock", "fraction", "string", "word", "bool", "null"],
)
def test_a_bad_quantity_is_a_422_on_quantity_and_changes_nothing(api, customer, product, quantity):
    # given a product with 10 in stock, one already in the cart
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)

    # when
    response = api.post("/cart/items", {"product_id": product.pk, "quantity": quantity})

    # then
    assert response.status_code == 422
    assert response.json()["detail"] == "Validation failed"
    assert list(error_fields(response)) == ["quantity"]
    assert quantities(customer) == {product.pk: 1}


def test_over_stock_says_how_many_are_left(api, customer):
    product = make_product(stock=3, name="Kettlebell")
    response = api.post("/cart/items", {"product_id": product.pk, "quantity": 4})
    assert error_fields(response) == {"quantity": "Only 3 of Kettlebell left in stock."}


@pytest.mark.parametrize("product_id", [999_999_999, "abc", None, 0])
def test_an_unknown_product_is_a_422_on_product_id(api, customer, product_id):
    response = api.post("/cart/items", {"product_id": product_id, "quantity": 1})
    assert response.status_code == 422
    assert list(error_fields(response)) == ["product_id"]
    assert quantities(customer) == {}


def test_changing_the_quantity(api, customer, product):
    # given
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)

    # when
    response = api.patch(f"/cart/items/{product.pk}", {"quantity": 4})

    # then
    assert response.status_code == 200
    assert response.json()["items"][0]["quantity"] == 4
    assert quantities(customer) == {product.pk: 4}


@pytest.mark.parametrize("quantity", [0, -2, 11, 1.5, "3"])
def test_changing_to_a_bad_quantity_is_a_422_and_changes_nothing(api, customer, product, quantity):
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)
    response = api.patch(f"/cart/items/{product.pk}", {"quantity": quantity})
    assert response.status_code == 422
    assert list(error_fields(response)) == ["quantity"]
    assert quantities(customer) == {product.pk: 1}


def test_changing_a_product_not_in_the_cart_is_a_404(api, product):
    response = api.patch(f"/cart/items/{product.pk}", {"quantity": 1})
    assert response.status_code == 404
    assert response.json()["errors"] == []


def test_changing_an_unknown_product_is_a_404(api):
    assert api.patch("/cart/items/999999999", {"quantity": 1}).status_code == 404


def test_removing_a_product(api, customer, product):
    # given
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)

    # when
    response = api.delete(f"/cart/items/{product.pk}")

    # then
    assert response.status_code == 204
    assert response.content == b""
    assert quantities(customer) == {}


def test_removing_a_product_not_in_the_cart_is_a_404(api, product):
    assert api.delete(f"/cart/items/{product.pk}").status_code == 404


def test_another_customers_cart_item_is_a_404_and_stays_untouched(api, other_customer, product):
    # given
    cart_add_item(customer=other_customer, product_id=product.pk, quantity=2)

    # when
    patched = api.patch(f"/cart/items/{product.pk}", {"quantity": 5})
    deleted = api.delete(f"/cart/items/{product.pk}")

    # then
    assert (patched.status_code, deleted.status_code) == (404, 404)
    assert quantities(other_customer) == {product.pk: 2}
    assert api.get("/cart").json()["items"] == []
