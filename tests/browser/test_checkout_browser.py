"""The shop as a person uses it, in a real headless Chromium: register, add two products to
the cart, check out with ACME's test card and see the order pending payment."""

import os
import re
from datetime import date
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from apps.orders.models import Order, OrderStatus
from tests.factories import make_product

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_register_add_two_products_check_out_and_see_the_order(live_server, page):
    # given: live_server with transactional_db flushes tables, so the test brings its products
    mat = make_product(name="Studio Yoga Mat", price=Decimal("62.50"), image="yogamat", stock=5)
    bottle = make_product(
        name="Steel Water Bottle", price=Decimal("34.99"), image="bottle", stock=5
    )
    url = live_server.url

    # when: a new visitor registers
    page.goto(f"{url}/accounts/register/")
    page.get_by_label("Username").fill("browser_buyer")
    page.get_by_label("E-mail").fill("buyer@example.com")
    page.get_by_label("Password", exact=True).fill("plank-squat-burpee-42")
    page.get_by_label("Password again").fill("plank-squat-burpee-42")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text("Welcome to ACME Fitness, browser_buyer!")).to_be_visible()

    # and adds two of the mat from its page and one bottle from the catalog grid
    page.goto(f"{url}/products/{mat.pk}/")
    page.get_by_label("Quantity").fill("2")
    page.get_by_role("button", name="Add to cart").click()
    expect(page.get_by_text("Added 2 x Studio Yoga Mat to your cart.")).to_be_visible()
    page.goto(f"{url}/")
    card = page.get_by_test_id("product-card").filter(has_text="Steel Water Bottle")
    card.get_by_role("button", name="Add to cart").click()
    expect(page.get_by_text("Added Steel Water Bottle to your cart.")).to_be_visible()
    expect(page.get_by_test_id("cart-count")).to_have_text("3")

    # and checks out with express delivery and the test card
    page.get_by_role("link", name=re.compile("Cart")).click()
    expect(page.get_by_test_id("cart-line")).to_have_count(2)
    expect(page.get_by_test_id("cart-subtotal")).to_have_text("$159.99")
    page.get_by_role("link", name="Checkout").click()
    page.get_by_label("Full name").fill("Walter White")
    page.get_by_label("Street and number").fill("308 Negra Arroyo Lane")
    page.get_by_label("City").fill("Albuquerque")
    page.get_by_label("ZIP / postal code").fill("87104")
    page.get_by_label("Country code").fill("US")
    page.get_by_role("radio", name=re.compile("Express")).check()
    expect(page.get_by_test_id("checkout-total")).to_have_text("$174.99")
    page.get_by_label("Card number").fill("4222222222222")
    page.get_by_label("Expiry month").fill("12")
    page.get_by_label("Expiry year").fill(str(date.today().year + 2))
    page.get_by_label("CVV").fill("123")
    page.get_by_role("button", name="Place order").click()

    # then: the order page shows it pending payment with the right total
    order = Order.objects.get(customer__username="browser_buyer")
    expect(page).to_have_url(f"{url}/orders/{order.pk}/")
    expect(page.locator('[data-status="pending_payment"]').first).to_have_text("Pending payment")
    expect(page.get_by_test_id("order-total")).to_have_text("$174.99")
    expect(page.get_by_text("Visa •••• 2222")).to_be_visible()
    expect(page.get_by_test_id("cart-count")).to_have_text("0")
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert order.total == Decimal("174.99")
    assert [(line.name, line.quantity) for line in order.lines.all()] == [
        ("Studio Yoga Mat", 2),
        ("Steel Water Bottle", 1),
    ]
    bottle.refresh_from_db()
    assert bottle.stock == 4
