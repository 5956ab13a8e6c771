"""Web pages of orders: checkout (happy path and every kind of bad input), the order page,
"my orders" and cancelling. A customer never sees another customer's order."""

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.carts.models import CartItem
from apps.carts.services import cart_add_item
from apps.catalog.models import Product
from apps.orders.models import Order, OrderStatus
from apps.orders.services import CardInput, ShippingAddress, order_place
from tests.factories import ADDRESS, GOOD_CARD, make_product

pytestmark = pytest.mark.django_db

CHECKOUT = {**ADDRESS, "delivery": "standard", **GOOD_CARD}


def _fill_cart(customer, *products: Product, quantity: int = 1) -> None:
    for product in products:
        cart_add_item(customer=customer, product_id=product.pk, quantity=quantity)


def _place_order(customer, *products: Product) -> Order:
    _fill_cart(customer, *(products or (make_product(),)))
    return order_place(
        customer=customer,
        address=ShippingAddress(**ADDRESS),
        delivery="standard",
        card=CardInput(**GOOD_CARD),
    )


# --- checkout ------------------------------------------------------------------------------


def test_checkout_needs_login(client):
    # when
    response = client.get(reverse("orders:checkout"))

    # then
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:login") + "?next=/orders/checkout/"


def test_checkout_page_shows_summary_address_delivery_and_card_fields(client, customer):
    # given
    mat = make_product(name="Yoga Mat", price=Decimal("62.50"))
    _fill_cart(customer, mat)
    client.force_login(customer)

    # when
    response = client.get(reverse("orders:checkout"))

    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert "1 \u00d7 Yoga Mat" in html  # 1 x (multiplication sign)
    for field in ("name", "street", "city", "zip", "country", "number", "exp_month", "cvv"):
        assert f'name="{field}"' in html, field
    assert 'type="radio" name="delivery" value="standard"' in html
    assert "Standard (3-5 days) · $5.00" in html
    assert "Express (next day) · $15.00" in html
    assert "$67.50" in html  # total with standard delivery
    assert "csrfmiddlewaretoken" in html


def test_checkout_page_with_empty_cart_goes_back_to_the_cart(client, customer):
    # given
    client.force_login(customer)

    # when
    response = client.get(reverse("orders:checkout"), follow=True)

    # then
    assert response.redirect_chain == [(reverse("carts:cart_detail"), 302)]
    assert "Your cart is empty" in response.content.decode()


def test_checkout_places_the_order_empties_cart_and_shows_the_order(client, customer):
    # given: 2 x 62.50 + 34.99 = 159.99, express delivery 15.00
    mat = make_product(name="Yoga Mat", price=Decimal("62.50"), stock=10)
    bottle = make_product(name="Water Bottle", price=Decimal("34.99"), stock=10)
    cart_add_item(customer=customer, product_id=mat.pk, quantity=2)
    cart_add_item(customer=customer, product_id=bottle.pk, quantity=1)
    client.force_login(customer)

    # when
    response = client.post(
        reverse("orders:checkout"), {**CHECKOUT, "delivery": "express"}, follow=True
    )

    # then
    order = Order.objects.get(customer=customer)
    assert response.redirect_chain == [(reverse("orders:order_detail", args=[order.pk]), 302)]
    assert order.total == Decimal("174.99")
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert not CartItem.objects.filter(cart__customer=customer).exists()
    mat.refresh_from_db()
    assert mat.stock == 8
    html = response.content.decode()
    assert "Pending payment" in html
    assert 'data-status="pending_payment"' in html
    assert "$174.99" in html
    assert f"Your order #{order.pk} is placed." in html
    assert "4222222222222" not in html


def _post_bad_checkout(client, customer, product=None, **changes):
    _fill_cart(customer, product or make_product())
    client.force_login(customer)
    return client.post(reverse("orders:checkout"), {**CHECKOUT, **changes})


def _field_errors(response, field):
    return response.context["form"].errors.get(field, [])


@pytest.mark.parametrize(
    ("changes", "field", "error"),
    [
        ({"number": "4222222222223"}, "number", "Card number is not valid (check the digits)."),
        ({"number": "4222 2222"}, "number", "Card number must have 13 to 19 digits."),
        ({"exp_month": 1, "exp_year": 2020}, "exp_year", "This card has expired."),
        ({"exp_month": 13}, "exp_month", "Expiry month must be between 1 and 12."),
        ({"cvv": "12"}, "cvv", "Security code must be 3 digits."),
        ({"cvv": "12345"}, "cvv", "Security code must be 3 digits."),
        ({"country": "U1"}, "country", "Use a two-letter country code, e.g. US or DE."),
        ({"city": ""}, "city", "This field is required."),
        ({"delivery": "teleport"}, "delivery", "Select a valid choice."),
    ],
)
def test_checkout_with_bad_input_shows_the_error_next_to_the_field_and_changes_nothing(
    client, customer, changes, field, error
):
    # given
    product = make_product(stock=10)

    # when
    response = _post_bad_checkout(client, customer, product, **changes)

    # then
    assert response.status_code == 400
    assert any(error in message for message in _field_errors(response, field))
    html = response.content.decode()
    assert '<div class="field has-error' in html
    assert not Order.objects.exists()
    assert CartItem.objects.filter(cart__customer=customer).count() == 1
    product.refresh_from_db()
    assert product.stock == 10


def test_checkout_reports_address_and_card_errors_together(client, customer):
    # when
    response = _post_bad_checkout(client, customer, city="", number="", cvv="1")

    # then: one round-trip shows every problem
    assert response.status_code == 400
    assert _field_errors(response, "city") == ["This field is required."]
    assert _field_errors(response, "number") == ["Enter the card number."]
    assert _field_errors(response, "cvv") == ["Security code must be 3 or 4 digits."]
    assert not Order.objects.exists()


def test_checkout_error_is_rendered_inside_the_fields_block(client, customer):
    # when
    response = _post_bad_checkout(client, customer, number="4222222222223")

    # then: the message sits right after the card number input, not at the top of the page
    html = response.content.decode()
    number_input = html.index('name="number"')
    message = html.index("Card number is not valid")
    expiry_input = html.index('name="exp_month"')
    assert number_input < message < expiry_input


def test_checkout_after_an_error_never_echoes_card_number_or_cvv(client, customer):
    # when: the card number is good but the CVV is too short
    response = _post_bad_checkout(client, customer, cvv="98")

    # then
    html = response.content.decode()
    assert "4222222222222" not in html
    assert 'value="98"' not in html
    assert 'value="Albuquerque"' in html  # the address is kept for convenience


def test_checkout_with_empty_cart_shows_a_form_error(client, customer):
    # given
    client.force_login(customer)

    # when
    response = client.post(reverse("orders:checkout"), CHECKOUT)

    # then
    assert response.status_code == 400
    assert response.context["form"].non_field_errors() == ["Your cart is empty."]
    assert "Your cart is empty." in response.content.decode()
    assert not Order.objects.exists()


def test_checkout_when_stock_ran_out_meanwhile_shows_a_form_error(client, customer):
    # given
    bike = make_product(name="Fit Bike", stock=2)
    cart_add_item(customer=customer, product_id=bike.pk, quantity=2)
    Product.objects.filter(pk=bike.pk).update(stock=1)
    client.force_login(customer)

    # when
    response = client.post(reverse("orders:checkout"), CHECKOUT)

    # then
    assert response.status_code == 400
    assert "Only 1 of Fit Bike left." in response.content.decode()
    assert not Order.objects.exists()


# --- order page, my orders -----------------------------------------------------------------


def test_order_page_shows_status_lines_totals_address_card_and_timeline(client, customer):
    # given
    order = _place_order(customer, make_product(name="Running shoes", price=Decimal("120.00")))
    client.force_login(customer)

    # when
    response = client.get(reverse("orders:order_detail", args=[order.pk]))

    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert "Pending payment" in html
    assert "Running shoes" in html
    assert "$120.00" in html
    assert "Free" in html  # standard delivery is free from 100.00
    assert "Walter White" in html and "Albuquerque" in html
    assert "Visa •••• 2222" in html
    assert "Order placed: 120.00 USD, awaiting payment." in html
    assert "Cancel order" in html


def test_order_timeline_is_oldest_first(client, customer):
    # given
    order = _place_order(customer)
    order.timeline.create(kind="orders.order.paid", status="paid", message="Payment received.")
    client.force_login(customer)

    # when
    html = client.get(reverse("orders:order_detail", args=[order.pk])).content.decode()

    # then
    assert html.index("Order placed") < html.index("Payment received.")


def test_another_customers_order_is_404(client, customer, other_customer):
    # given
    order = _place_order(other_customer)
    client.force_login(customer)

    # when
    response = client.get(reverse("orders:order_detail", args=[order.pk]))

    # then
    assert response.status_code == 404
    assert "Walter White" not in response.content.decode()


def test_my_orders_lists_only_my_own(client, customer, other_customer):
    # given
    mine = _place_order(customer, make_product(name="Yoga Mat"))
    theirs = _place_order(other_customer, make_product(name="Fit Bike"))
    client.force_login(customer)

    # when
    response = client.get(reverse("orders:order_list"))

    # then
    html = response.content.decode()
    assert list(response.context["orders"]) == [mine]
    assert reverse("orders:order_detail", args=[mine.pk]) in html
    assert reverse("orders:order_detail", args=[theirs.pk]) not in html
    assert "Fit Bike" not in html


def test_my_orders_empty_state(client, customer):
    # given
    client.force_login(customer)

    # when
    response = client.get(reverse("orders:order_list"))

    # then
    assert "You have not ordered anything yet." in response.content.decode()


# --- cancelling ----------------------------------------------------------------------------


def test_cancel_button_cancels_the_order_and_releases_stock(client, customer):
    # given
    product = make_product(stock=5)
    order = _place_order(customer, product)
    client.force_login(customer)

    # when
    response = client.post(reverse("orders:order_cancel", args=[order.pk]), follow=True)

    # then
    order.refresh_from_db()
    product.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert product.stock == 5
    html = response.content.decode()
    assert f"Order #{order.pk} is cancelled." in html
    assert 'data-status="cancelled"' in html
    assert "Cancel order" not in html


def test_no_cancel_button_once_shipped_and_cancel_is_refused(client, customer):
    # given
    order = _place_order(customer)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.SHIPPED)
    client.force_login(customer)

    # when
    page = client.get(reverse("orders:order_detail", args=[order.pk]))
    response = client.post(reverse("orders:order_cancel", args=[order.pk]), follow=True)

    # then
    assert "Cancel order" not in page.content.decode()
    assert "can no longer be cancelled" in response.content.decode()
    order.refresh_from_db()
    assert order.status == OrderStatus.SHIPPED


def test_cancelling_another_customers_order_is_404(client, customer, other_customer):
    # given
    order = _place_order(other_customer)
    client.force_login(customer)

    # when
    response = client.post(reverse("orders:order_cancel", args=[order.pk]))

    # then
    assert response.status_code == 404
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT


def test_order_page_refreshes_itself_while_the_order_is_moving(client, customer):
    # given an order that is still waiting for its payment
    order = _place_order(customer)
    client.force_login(customer)

    # when
    html = client.get(reverse("orders:order_detail", args=[order.pk])).content.decode()

    # then the page carries the live block and the script that refreshes it
    assert 'id="order-live" data-final="false"' in html
    assert "setTimeout(refresh" in html


def test_order_page_stops_refreshing_once_the_order_is_final(client, customer):
    # given a delivered order
    order = _place_order(customer)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.DELIVERED)
    client.force_login(customer)

    # when
    html = client.get(reverse("orders:order_detail", args=[order.pk])).content.decode()

    # then
    assert 'id="order-live" data-final="true"' in html
    assert "setTimeout(refresh" not in html
