"""Cart services: add, change, remove; each refuses bad input and then changes nothing."""

from decimal import Decimal

import pytest

from apps.carts.exceptions import CartError, ItemNotInCart, ProductNotFound
from apps.carts.models import Cart, CartItem
from apps.carts.selectors import cart_item_count, cart_view
from apps.carts.services import (
    MAX_QUANTITY_PER_LINE,
    cart_add_item,
    cart_remove_item,
    cart_set_quantity,
)
from tests.factories import make_product

pytestmark = pytest.mark.django_db


def quantities(customer) -> dict[int, int]:
    return dict(
        CartItem.objects.filter(cart__customer=customer).values_list("product_id", "quantity")
    )


def test_adding_a_product_creates_the_cart_and_a_line(customer, product):
    # when
    item = cart_add_item(customer=customer, product_id=product.pk, quantity=2)

    # then
    assert item.quantity == 2
    assert Cart.objects.filter(customer=customer).exists()
    assert quantities(customer) == {product.pk: 2}


def test_adding_the_same_product_again_adds_up(customer, product):
    # given
    cart_add_item(customer=customer, product_id=product.pk, quantity=2)

    # when
    cart_add_item(customer=customer, product_id=product.pk, quantity=3)

    # then
    assert quantities(customer) == {product.pk: 5}


@pytest.mark.parametrize("quantity", [0, -1, True, 1.5, "2", None])
def test_adding_a_quantity_that_is_not_a_whole_number_of_at_least_1_is_refused(
    customer, product, quantity
):
    with pytest.raises(CartError) as excinfo:
        cart_add_item(customer=customer, product_id=product.pk, quantity=quantity)
    assert excinfo.value.field == "quantity"
    assert quantities(customer) == {}
    assert not Cart.objects.filter(customer=customer).exists()


def test_adding_more_than_the_stock_is_refused(customer):
    # given
    product = make_product(stock=3)

    # when / then
    with pytest.raises(CartError, match="Only 3"):
        cart_add_item(customer=customer, product_id=product.pk, quantity=4)
    assert quantities(customer) == {}


def test_the_stock_limit_counts_what_is_already_in_the_cart(customer):
    # given
    product = make_product(stock=3)
    cart_add_item(customer=customer, product_id=product.pk, quantity=2)

    # when / then
    with pytest.raises(CartError):
        cart_add_item(customer=customer, product_id=product.pk, quantity=2)
    assert quantities(customer) == {product.pk: 2}


def test_at_most_99_of_one_product(customer):
    product = make_product(stock=500)
    with pytest.raises(CartError, match=str(MAX_QUANTITY_PER_LINE)):
        cart_add_item(customer=customer, product_id=product.pk, quantity=MAX_QUANTITY_PER_LINE + 1)


def test_adding_an_unknown_product_is_refused(customer):
    with pytest.raises(ProductNotFound) as excinfo:
        cart_add_item(customer=customer, product_id=999_999_999, quantity=1)
    assert excinfo.value.field == "product_id"


def test_setting_the_quantity_replaces_it(customer, product):
    # given
    cart_add_item(customer=customer, product_id=product.pk, quantity=2)

    # when
    cart_set_quantity(customer=customer, product_id=product.pk, quantity=7)

    # then
    assert quantities(customer) == {product.pk: 7}


@pytest.mark.parametrize("quantity", [0, -3, 11])
def test_setting_a_quantity_outside_1_to_the_stock_is_refused(customer, product, quantity):
    # given a product with 10 in stock, 2 in the cart
    cart_add_item(customer=customer, product_id=product.pk, quantity=2)

    # when / then
    with pytest.raises(CartError):
        cart_set_quantity(customer=customer, product_id=product.pk, quantity=quantity)
    assert quantities(customer) == {product.pk: 2}


def test_setting_the_quantity_of_a_product_not_in_the_cart_is_refused(customer, product):
    with pytest.raises(ItemNotInCart):
        cart_set_quantity(customer=customer, product_id=product.pk, quantity=1)


def test_a_customer_cannot_change_another_customers_cart(customer, other_customer, product):
    # given
    cart_add_item(customer=other_customer, product_id=product.pk, quantity=2)

    # when / then
    with pytest.raises(ItemNotInCart):
        cart_set_quantity(customer=customer, product_id=product.pk, quantity=5)
    with pytest.raises(ItemNotInCart):
        cart_remove_item(customer=customer, product_id=product.pk)
    assert quantities(other_customer) == {product.pk: 2}


def test_removing_a_product_deletes_its_line(customer, product):
    # given
    other = make_product()
    cart_add_item(customer=customer, product_id=product.pk, quantity=2)
    cart_add_item(customer=customer, product_id=other.pk, quantity=1)

    # when
    cart_remove_item(customer=customer, product_id=product.pk)

    # then
    assert quantities(customer) == {other.pk: 1}


def test_removing_a_product_not_in_the_cart_is_refused(customer, product):
    with pytest.raises(ItemNotInCart):
        cart_remove_item(customer=customer, product_id=product.pk)


def test_the_cart_view_adds_up_lines_at_current_prices(customer):
    # given
    mat = make_product(price=Decimal("24.50"))
    bottle = make_product(price=Decimal("9.99"))
    cart_add_item(customer=customer, product_id=mat.pk, quantity=2)
    cart_add_item(customer=customer, product_id=bottle.pk, quantity=3)

    # when
    view = cart_view(customer=customer)

    # then
    assert [(line.product_id, line.line_total) for line in view.lines] == [
        (mat.pk, Decimal("49.00")),
        (bottle.pk, Decimal("29.97")),
    ]
    assert view.item_count == 5 == cart_item_count(customer=customer)
    assert view.subtotal == Decimal("78.97")


def test_a_customer_without_a_cart_sees_an_empty_one(customer):
    view = cart_view(customer=customer)
    assert view.is_empty
    assert view.subtotal == Decimal("0.00")
    assert cart_item_count(customer=customer) == 0
