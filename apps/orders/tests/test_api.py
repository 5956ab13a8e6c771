"""Checkout and orders over the JSON API, from registration to the order's timeline."""

from decimal import Decimal

import pytest

from apps.carts.models import CartItem
from apps.carts.services import cart_add_item
from apps.catalog.models import Product
from apps.orders.models import Order, OrderStatus
from tests.api_client import ApiClient, error_fields
from tests.factories import (
    ADDRESS,
    DECLINED_CARD,
    GOOD_CARD,
    make_customer,
    make_product,
    place_order_for,
)

pytestmark = pytest.mark.django_db

AMEX = {"number": "378282246310005", "exp_month": 12, "exp_year": 2099, "cvv": "1234"}


@pytest.fixture
def api(client, customer):
    return ApiClient(client).login_as(customer)


def checkout(**overrides) -> dict:
    return {"address": dict(ADDRESS), "delivery": "standard", "card": dict(GOOD_CARD), **overrides}


def snapshot(customer) -> tuple:
    """What a refused call must leave as it was: stock, cart and orders."""
    return (
        sorted(Product.objects.values_list("pk", "stock")),
        sorted(
            CartItem.objects.filter(cart__customer=customer).values_list("product_id", "quantity")
        ),
        Order.objects.count(),
    )


def test_the_whole_checkout_through_the_api(client):
    # given a new customer who registers and logs in
    api = ApiClient(client)
    registered = api.post(
        "/register",
        {"username": "walt", "email": "walt@example.com", "password": "blue-crystal-99"},
    )
    assert registered.status_code == 201
    login = api.post("/login", {"username": "walt", "password": "blue-crystal-99"})
    api.token = login.json()["access_token"]
    mat = make_product(price=Decimal("24.50"), stock=5)
    bottle = make_product(price=Decimal("9.99"), stock=5)
    listed = {item["id"] for item in api.get("/products").json()}
    assert {mat.pk, bottle.pk} <= listed

    # when they add two products and check out with the test card
    assert api.post("/cart/items", {"product_id": mat.pk, "quantity": 2}).status_code == 201
    assert api.post("/cart/items", {"product_id": bottle.pk, "quantity": 1}).status_code == 201
    response = api.post("/orders", checkout())

    # then the order is pending payment, with the right total (58.99 + 5.00 standard delivery)
    assert response.status_code == 201
    order = response.json()
    assert order["status"] == "pending_payment"
    assert (order["subtotal"], order["delivery_cost"], order["total"]) == ("58.99", "5.00", "63.99")
    assert order["currency"] == "USD"
    assert order["address"] == ADDRESS
    assert order["payment"] == {"brand": "visa", "last4": "2222", "exp_month": 12, "exp_year": 2099}
    assert [
        (line["product_id"], line["quantity"], line["line_total"]) for line in order["lines"]
    ] == [
        (mat.pk, 2, "49.00"),
        (bottle.pk, 1, "9.99"),
    ]
    # and the cart is empty and the stock reserved
    assert api.get("/cart").json()["items"] == []
    assert api.get(f"/products/{mat.pk}").json()["stock"] == 3
    # and the order page shows what happened so far
    shown = api.get(f"/orders/{order['id']}").json()
    assert shown["status"] == "pending_payment"
    assert shown["total"] == "63.99"
    assert [(entry["kind"], entry["status"]) for entry in shown["timeline"]] == [
        ("orders.order.placed", "pending_payment")
    ]
    assert set(shown["timeline"][0]) == {"at", "kind", "status", "message", "source"}


def test_the_card_number_cvv_and_token_are_never_echoed(api, customer, product):
    # given
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)

    # when
    response = api.post("/orders", checkout(card=dict(DECLINED_CARD, cvv="987")))

    # then
    assert response.status_code == 201
    text = response.content.decode()
    token = Order.objects.get(pk=response.json()["id"]).payment_token
    assert DECLINED_CARD["number"] not in text
    assert "987" not in text
    assert token not in text


def test_free_standard_delivery_from_100_and_express_is_always_charged(api, customer):
    # given
    product = make_product(price=Decimal("50.00"))
    cart_add_item(customer=customer, product_id=product.pk, quantity=2)

    # when
    order = api.post("/orders", checkout(delivery="express")).json()

    # then
    assert (order["delivery"], order["delivery_cost"], order["total"]) == (
        "express",
        "15.00",
        "115.00",
    )


def test_amex_with_a_4_digit_cvv_is_accepted(api, customer, product):
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)
    response = api.post("/orders", checkout(card=AMEX))
    assert response.status_code == 201
    assert response.json()["payment"]["brand"] == "amex"


@pytest.mark.parametrize(
    ("card", "field"),
    [
        ({"number": "4222222222223"}, "card.number"),
        ({"number": "4222 2222 x"}, "card.number"),
        ({"number": "42222222"}, "card.number"),
        ({"exp_month": 1, "exp_year": 2020}, "card.exp_year"),
        ({"exp_month": 13}, "card.exp_month"),
        ({"cvv": "1234"}, "card.cvv"),
        ({"cvv": "12"}, "card.cvv"),
        ({**AMEX, "cvv": "123"}, "card.cvv"),
        ({"exp_month": "soon"}, "card.exp_month"),
        ({"number": 4222222222222}, "card.number"),
    ],
    ids=[
        "luhn",
        "letters",
        "too short",
        "expired",
        "month 13",
        "visa cvv 4 digits",
        "visa cvv 2 digits",
        "amex cvv 3 digits",
        "month not a number",
        "number not a string",
    ],
)
def test_an_invalid_card_is_a_422_on_its_field_and_changes_nothing(
    api, customer, product, card, field
):
    # given
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)
    before = snapshot(customer)

    # when
    response = api.post("/orders", checkout(card={**GOOD_CARD, **card}))

    # then
    assert response.status_code == 422
    assert response.json()["detail"] == "Validation failed"
    assert list(error_fields(response)) == [field]
    assert snapshot(customer) == before


def test_a_missing_card_field_is_named_by_its_path(api, customer, product):
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)
    card = {key: value for key, value in GOOD_CARD.items() if key != "cvv"}
    response = api.post("/orders", checkout(card=card))
    assert response.status_code == 422
    assert error_fields(response) == {"card.cvv": "Field required"}


def test_every_bad_field_of_address_and_card_is_reported_at_once(api, customer, product):
    # given
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)
    before = snapshot(customer)

    # when
    response = api.post(
        "/orders",
        checkout(
            address={**ADDRESS, "city": "  ", "country": "USA"},
            card={**GOOD_CARD, "number": "4222222222223", "cvv": "1"},
        ),
    )

    # then
    assert response.status_code == 422
    assert set(error_fields(response)) == {
        "address.city",
        "address.country",
        "card.number",
        "card.cvv",
    }
    assert snapshot(customer) == before


@pytest.mark.parametrize(("field", "length"), [("name", 121), ("street", 201), ("city", 101)])
def test_an_overlong_address_field_is_a_422(api, customer, product, field, length):
    # given
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)
    before = snapshot(customer)

    # when
    response = api.post("/orders", checkout(address={**ADDRESS, field: "x" * length}))

    # then
    assert response.status_code == 422
    assert list(error_fields(response)) == [f"address.{field}"]
    assert snapshot(customer) == before


def test_a_null_character_in_the_address_is_a_422(api, customer, product):
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)
    response = api.post("/orders", checkout(address={**ADDRESS, "city": "Albu\x00querque"}))
    assert response.status_code == 422
    assert list(error_fields(response)) == ["address.city"]


def test_a_missing_body_is_a_422_on_body(api):
    response = api.post("/orders")
    assert response.status_code == 422
    assert error_fields(response) == {"body": "Field required"}


def test_an_unknown_delivery_method_is_a_422(api, customer, product):
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)
    response = api.post("/orders", checkout(delivery="teleport"))
    assert response.status_code == 422
    assert list(error_fields(response)) == ["delivery"]


def test_checking_out_an_empty_cart_is_a_422_on_cart(api, customer):
    # given
    before = snapshot(customer)

    # when
    response = api.post("/orders", checkout())

    # then
    assert response.status_code == 422
    assert error_fields(response) == {"cart": "Your cart is empty."}
    assert snapshot(customer) == before


def test_checking_out_more_than_is_left_is_a_422_on_cart(api, customer):
    # given a cart of 3 while someone else bought all but 2 meanwhile
    product = make_product(stock=3, name="Foam roller")
    cart_add_item(customer=customer, product_id=product.pk, quantity=3)
    Product.objects.filter(pk=product.pk).update(stock=2)
    before = snapshot(customer)

    # when
    response = api.post("/orders", checkout())

    # then
    assert response.status_code == 422
    assert error_fields(response) == {"cart": "Only 2 of Foam roller left."}
    assert snapshot(customer) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/orders"), ("get", "/orders"), ("get", "/orders/1"), ("post", "/orders/1/cancel")],
)
def test_every_order_endpoint_needs_a_token(client, method, path):
    response = getattr(ApiClient(client), method)(path)
    assert response.status_code == 401


def test_orders_are_the_callers_own_newest_first(api, customer, other_customer, product):
    # given
    first = place_order_for(customer, product)
    second = place_order_for(customer, product)
    place_order_for(other_customer, product)

    # when
    response = api.get("/orders")

    # then
    assert response.status_code == 200
    assert [order["id"] for order in response.json()] == [second.pk, first.pk]


def test_another_customers_order_is_a_404_that_reveals_nothing(api, other_customer, product):
    # given
    theirs = place_order_for(other_customer, product)

    # when
    shown = api.get(f"/orders/{theirs.pk}")
    cancelled = api.post(f"/orders/{theirs.pk}/cancel")

    # then
    assert (shown.status_code, cancelled.status_code) == (404, 404)
    assert shown.json() == cancelled.json() == {"detail": "Not found.", "errors": []}
    theirs.refresh_from_db()
    assert theirs.status == OrderStatus.PENDING_PAYMENT


def test_an_unknown_order_is_a_404(api):
    assert api.get("/orders/999999999").status_code == 404


def test_cancelling_releases_the_stock_and_extends_the_timeline(api, customer):
    # given
    product = make_product(stock=5)
    order = place_order_for(customer, product, quantity=2)

    # when
    response = api.post(f"/orders/{order.pk}/cancel")

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "cancelled"
    assert [entry["kind"] for entry in body["timeline"]] == [
        "orders.order.placed",
        "orders.order.cancelled",
    ]
    product.refresh_from_db()
    assert product.stock == 5


@pytest.mark.parametrize(
    "status",
    [OrderStatus.CANCELLED, OrderStatus.SHIPPED, OrderStatus.DELIVERED, OrderStatus.PAYMENT_FAILED],
)
def test_an_order_past_payment_cannot_be_cancelled_409(api, customer, product, status):
    # given
    order = place_order_for(customer, product)
    Order.objects.filter(pk=order.pk).update(status=status)
    stock = Product.objects.get(pk=product.pk).stock

    # when
    response = api.post(f"/orders/{order.pk}/cancel")

    # then
    assert response.status_code == 409
    assert "can no longer be cancelled" in response.json()["detail"]
    assert Product.objects.get(pk=product.pk).stock == stock


def test_a_token_of_another_customer_sees_only_their_own_orders(client, customer, product):
    # given
    mine = place_order_for(customer, product)
    stranger = ApiClient(client).login_as(make_customer())

    # when / then
    assert stranger.get("/orders").json() == []
    assert stranger.get(f"/orders/{mine.pk}").status_code == 404
