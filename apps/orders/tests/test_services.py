"""Checkout and cancellation: one transaction for order, stock, cart and the outbox event."""

from decimal import Decimal

import pytest

from apps.carts.models import CartItem
from apps.carts.services import cart_add_item
from apps.catalog.models import Product
from apps.orders.exceptions import OrderInvalid, OrderNotCancellable, OrderNotFound
from apps.orders.models import Order, OrderStatus
from apps.orders.services import CardInput, ShippingAddress, order_cancel, order_place
from outbox.models import OutboxMessage
from tests.factories import ADDRESS, DECLINED_CARD, GOOD_CARD, make_product

pytestmark = pytest.mark.django_db


def place(customer, *, delivery="standard", card=GOOD_CARD, **address) -> Order:
    return order_place(
        customer=customer,
        address=ShippingAddress(**{**ADDRESS, **address}),
        delivery=delivery,
        card=CardInput(**card),
    )


def stock_of(product) -> int:
    return Product.objects.get(pk=product.pk).stock


def test_placing_an_order_reserves_stock_empties_the_cart_and_snapshots_the_lines(customer):
    # given
    mat = make_product(price=Decimal("24.50"), stock=5)
    bottle = make_product(price=Decimal("9.99"), stock=2)
    cart_add_item(customer=customer, product_id=mat.pk, quantity=2)
    cart_add_item(customer=customer, product_id=bottle.pk, quantity=2)

    # when
    order = place(customer)

    # then the order is pending payment with totals incl. standard delivery
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert (order.subtotal, order.delivery_cost, order.total) == (
        Decimal("68.98"),
        Decimal("5.00"),
        Decimal("73.98"),
    )
    # and the stock is reserved, the cart emptied
    assert (stock_of(mat), stock_of(bottle)) == (3, 0)
    assert not CartItem.objects.filter(cart__customer=customer).exists()
    # and the lines keep name and price as they were, whatever happens to the product later
    Product.objects.filter(pk=mat.pk).update(price=Decimal("99.00"), name="Renamed")
    assert [
        (line.product_id, line.name, line.unit_price, line.quantity) for line in order.lines.all()
    ] == [
        (mat.pk, mat.name, Decimal("24.50"), 2),
        (bottle.pk, bottle.name, Decimal("9.99"), 2),
    ]


def test_placing_an_order_keeps_only_brand_last4_expiry_and_token_of_the_card(customer, product):
    # given
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)

    # when
    order = place(customer, country="us", city="  Albuquerque ")

    # then
    assert (order.card_brand, order.card_last4, order.card_exp_month, order.card_exp_year) == (
        "visa",
        "2222",
        12,
        2099,
    )
    assert order.payment_token.startswith("tok_")
    assert (order.ship_country, order.ship_city) == ("US", "Albuquerque")


def test_placing_an_order_adds_the_first_timeline_entry(customer, product):
    # given
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)

    # when
    order = place(customer)

    # then
    entries = list(order.timeline.all())
    assert [(e.kind, e.status, e.source) for e in entries] == [
        ("orders.order.placed", OrderStatus.PENDING_PAYMENT, "orders")
    ]
    assert "15.00 USD" in entries[0].message


def test_placing_an_order_records_the_placed_event_in_the_outbox(customer, product):
    # given
    cart_add_item(customer=customer, product_id=product.pk, quantity=3)

    # when
    order = place(customer, card=DECLINED_CARD)

    # then
    message = OutboxMessage.objects.get(type="orders.order.placed", aggregate_id=str(order.pk))
    assert message.correlation_id == str(order.correlation_id)
    assert str(message.event_id) == str(order.timeline.get().event_id)
    payload = message.payload
    assert (payload["order_id"], payload["total"]) == (order.pk, "35.00")
    assert payload["payment"]["token"].startswith("tok_declined_")
    assert payload["lines"] == [
        {
            "product_id": product.pk,
            "sku": product.sku,
            "name": product.name,
            "unit_price": "10.00",
            "quantity": 3,
        }
    ]
    # never the card number or the CVV
    assert DECLINED_CARD["number"] not in str(payload)
    assert "cvv" not in str(payload)


@pytest.mark.parametrize(
    ("delivery", "unit_price", "quantity", "expected_cost"),
    [
        ("standard", "99.99", 1, "5.00"),
        ("standard", "50.00", 2, "0.00"),
        ("express", "50.00", 2, "15.00"),
        ("express", "10.00", 1, "15.00"),
    ],
)
def test_delivery_cost_standard_is_free_from_100(
    customer, delivery, unit_price, quantity, expected_cost
):
    # given
    product = make_product(price=Decimal(unit_price))
    cart_add_item(customer=customer, product_id=product.pk, quantity=quantity)

    # when
    order = place(customer, delivery=delivery)

    # then
    assert order.delivery_cost == Decimal(expected_cost)
    assert order.total == order.subtotal + order.delivery_cost


def test_an_empty_cart_cannot_be_checked_out(customer):
    with pytest.raises(OrderInvalid) as excinfo:
        place(customer)
    assert excinfo.value.errors == {"cart": "Your cart is empty."}
    assert not Order.objects.exists()


def test_bad_address_delivery_and_card_are_all_reported_and_nothing_changes(customer, product):
    # given
    cart_add_item(customer=customer, product_id=product.pk, quantity=2)

    # when
    with pytest.raises(OrderInvalid) as excinfo:
        place(customer, delivery="drone", card={**GOOD_CARD, "cvv": "12"}, zip="", country="USA")

    # then
    assert set(excinfo.value.errors) == {"address.zip", "address.country", "delivery", "card.cvv"}
    assert stock_of(product) == 10
    assert CartItem.objects.filter(cart__customer=customer).get().quantity == 2
    assert not Order.objects.exists()
    assert not OutboxMessage.objects.filter(type="orders.order.placed").exists()


def test_too_little_stock_refuses_the_whole_order(customer):
    # given two lines, one of which is short
    plenty = make_product(stock=10)
    scarce = make_product(stock=2, name="Rowing machine")
    cart_add_item(customer=customer, product_id=plenty.pk, quantity=1)
    cart_add_item(customer=customer, product_id=scarce.pk, quantity=2)
    Product.objects.filter(pk=scarce.pk).update(stock=1)

    # when
    with pytest.raises(OrderInvalid) as excinfo:
        place(customer)

    # then nothing is reserved, not even the line that had enough
    assert excinfo.value.errors == {"cart": "Only 1 of Rowing machine left."}
    assert (stock_of(plenty), stock_of(scarce)) == (10, 1)
    assert CartItem.objects.filter(cart__customer=customer).count() == 2
    assert not Order.objects.exists()


def test_cancelling_releases_the_stock_and_records_the_event(customer):
    # given
    product = make_product(stock=4)
    cart_add_item(customer=customer, product_id=product.pk, quantity=3)
    order = place(customer)

    # when
    cancelled = order_cancel(customer=customer, order_id=order.pk, reason="Changed my mind")

    # then
    assert cancelled.status == OrderStatus.CANCELLED
    assert stock_of(product) == 4
    assert [(e.kind, e.status, e.message) for e in order.timeline.all()][-1] == (
        "orders.order.cancelled",
        OrderStatus.CANCELLED,
        "Changed my mind",
    )
    event = OutboxMessage.objects.get(type="orders.order.cancelled", aggregate_id=str(order.pk))
    assert event.payload["previous_status"] == "pending_payment"
    assert event.correlation_id == str(order.correlation_id)


def test_a_paid_order_can_be_cancelled(customer, product):
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)
    order = place(customer)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.PAID)
    assert order_cancel(customer=customer, order_id=order.pk).status == OrderStatus.CANCELLED


@pytest.mark.parametrize(
    "status",
    [OrderStatus.SHIPPED, OrderStatus.DELIVERED, OrderStatus.PAYMENT_FAILED, OrderStatus.CANCELLED],
)
def test_an_order_past_payment_cannot_be_cancelled(customer, product, status):
    # given
    cart_add_item(customer=customer, product_id=product.pk, quantity=1)
    order = place(customer)
    Order.objects.filter(pk=order.pk).update(status=status)

    # when / then
    with pytest.raises(OrderNotCancellable):
        order_cancel(customer=customer, order_id=order.pk)
    assert stock_of(product) == 9
    assert Order.objects.get(pk=order.pk).status == status
    assert not OutboxMessage.objects.filter(type="orders.order.cancelled").exists()


def test_a_customer_cannot_cancel_another_customers_order(customer, other_customer, product):
    # given
    cart_add_item(customer=other_customer, product_id=product.pk, quantity=1)
    theirs = place(other_customer)

    # when / then
    with pytest.raises(OrderNotFound):
        order_cancel(customer=customer, order_id=theirs.pk)
    assert Order.objects.get(pk=theirs.pk).status == OrderStatus.PENDING_PAYMENT
