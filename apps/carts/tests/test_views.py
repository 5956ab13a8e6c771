"""Web pages of the cart: add, change quantity, remove; refused changes change nothing."""

import pytest
from django.urls import reverse

from apps.carts.models import CartItem
from apps.carts.services import cart_add_item
from tests.factories import make_product

pytestmark = pytest.mark.django_db


def _quantity(customer, product) -> int | None:
    item = CartItem.objects.filter(cart__customer=customer, product=product).first()
    return item.quantity if item else None


def test_anonymous_add_to_cart_redirects_to_login_with_next(client, product):
    # given
    product_page = reverse("catalog:product_detail", args=[product.pk])

    # when
    response = client.post(
        reverse("carts:add_item"), {"product_id": product.pk, "quantity": 1, "next": product_page}
    )

    # then
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('accounts:login')}?next={product_page}"
    assert not CartItem.objects.exists()


def test_anonymous_cart_page_redirects_to_login(client):
    # when
    response = client.get(reverse("carts:cart_detail"))

    # then
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:login") + "?next=/cart/"


def test_add_to_cart_adds_the_product_and_says_so(client, customer):
    # given
    product = make_product(name="Yoga Mat")
    client.force_login(customer)

    # when
    response = client.post(
        reverse("carts:add_item"),
        {"product_id": product.pk, "quantity": 1, "next": "/"},
        follow=True,
    )

    # then
    assert response.redirect_chain == [("/", 302)]
    assert "Added Yoga Mat to your cart." in response.content.decode()
    assert _quantity(customer, product) == 1


def test_add_to_cart_ignores_an_offsite_next(client, customer, product):
    # given
    client.force_login(customer)

    # when
    response = client.post(
        reverse("carts:add_item"),
        {"product_id": product.pk, "quantity": 1, "next": "https://evil.example/"},
    )

    # then
    assert response["Location"] == reverse("catalog:product_list")


def test_add_more_than_stock_shows_error_and_adds_nothing(client, customer):
    # given
    product = make_product(name="Fit Bike", stock=2)
    client.force_login(customer)

    # when
    response = client.post(
        reverse("carts:add_item"), {"product_id": product.pk, "quantity": 3}, follow=True
    )

    # then
    assert "Only 2 of Fit Bike left in stock." in response.content.decode()
    assert _quantity(customer, product) is None


def test_add_unknown_product_shows_error(client, customer):
    # given
    client.force_login(customer)

    # when
    response = client.post(
        reverse("carts:add_item"), {"product_id": 999_999, "quantity": 1}, follow=True
    )

    # then
    assert "There is no product with id 999999." in response.content.decode()
    assert not CartItem.objects.exists()


def test_cart_page_lists_lines_with_subtotal_and_checkout(client, customer):
    # given
    mat = make_product(name="Yoga Mat", price="62.50", image="yogamat")
    bottle = make_product(name="Water Bottle", price="34.99", image="bottle")
    cart_add_item(customer=customer, product_id=mat.pk, quantity=2)
    cart_add_item(customer=customer, product_id=bottle.pk, quantity=1)
    client.force_login(customer)

    # when
    response = client.get(reverse("carts:cart_detail"))

    # then
    html = response.content.decode()
    assert response.status_code == 200
    assert "Yoga Mat" in html and "Water Bottle" in html
    assert "catalog/img/yogamat.svg" in html
    assert "$62.50 each" in html
    assert "$125.00" in html  # 2 x 62.50
    assert "$159.99" in html  # subtotal
    assert reverse("orders:checkout") in html
    assert html.count("csrfmiddlewaretoken") >= 5  # logout + 2 quantity + 2 remove forms


def test_empty_cart_page_says_so(client, customer):
    # given
    client.force_login(customer)

    # when
    response = client.get(reverse("carts:cart_detail"))

    # then
    assert "Your cart is empty." in response.content.decode()
    assert reverse("orders:checkout") not in response.content.decode()


def test_change_quantity_updates_the_line(client, customer, product):
    # given
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)
    client.force_login(customer)

    # when
    response = client.post(reverse("carts:update_item", args=[product.pk]), {"quantity": 4})

    # then
    assert response.status_code == 302
    assert response["Location"] == reverse("carts:cart_detail")
    assert _quantity(customer, product) == 4


@pytest.mark.parametrize(
    ("quantity", "error"),
    [
        ("0", "Quantity must be a whole number of at least 1."),
        ("-2", "Quantity must be a whole number of at least 1."),
        ("11", "Only 10 of"),
        ("two", "Enter a whole number."),
    ],
)
def test_refused_quantity_shows_error_next_to_line_and_changes_nothing(
    client, customer, product, quantity, error
):
    # given: 10 in stock, 2 in the cart
    cart_add_item(customer=customer, product_id=product.pk, quantity=2)
    client.force_login(customer)

    # when
    response = client.post(reverse("carts:update_item", args=[product.pk]), {"quantity": quantity})

    # then
    assert response.status_code == 400
    html = response.content.decode()
    assert error in html
    assert f'id="qty-error-{product.pk}"' in html
    assert _quantity(customer, product) == 2


def test_change_quantity_of_product_not_in_cart_shows_error(client, customer, product):
    # given
    client.force_login(customer)

    # when
    response = client.post(reverse("carts:update_item", args=[product.pk]), {"quantity": 1})

    # then
    assert response.status_code == 400
    assert "is not in your cart." in response.content.decode()
    assert not CartItem.objects.exists()


def test_remove_takes_the_line_out(client, customer):
    # given
    product = make_product(name="Weights")
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)
    client.force_login(customer)

    # when
    response = client.post(reverse("carts:remove_item", args=[product.pk]), follow=True)

    # then
    assert "Removed Weights from your cart." in response.content.decode()
    assert "Your cart is empty." in response.content.decode()
    assert _quantity(customer, product) is None


def test_changing_the_cart_needs_post(client, customer, product):
    # given
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)
    client.force_login(customer)

    # when
    response = client.get(reverse("carts:remove_item", args=[product.pk]))

    # then
    assert response.status_code == 405
    assert _quantity(customer, product) == 1


def test_one_customer_cannot_change_another_customers_cart(client, customer, other_customer):
    # given
    product = make_product()
    cart_add_item(customer=other_customer, product_id=product.pk, quantity=2)
    client.force_login(customer)

    # when
    client.post(reverse("carts:update_item", args=[product.pk]), {"quantity": 5})
    client.post(reverse("carts:remove_item", args=[product.pk]))

    # then
    assert _quantity(other_customer, product) == 2
