"""Two customers check out the last unit at the same moment: exactly one gets it.

Real transactions on two connections (not the test case's wrapping transaction), so PostgreSQL's
row locks decide, exactly as with two web workers.
"""

import threading
from collections.abc import Callable

import pytest
from django.db import connection

from apps.carts.services import cart_add_item
from apps.catalog.models import Product
from apps.orders.exceptions import OrderInvalid
from apps.orders.models import Order
from apps.orders.services import CardInput, ShippingAddress, order_place
from tests.factories import ADDRESS, GOOD_CARD, make_customer, make_product

TIMEOUT = 30


def in_threads(functions: list[Callable[[], object]]) -> list[object]:
    """Run each function in its own thread and connection, all released together by a barrier;
    return each one's result or the exception it raised."""
    barrier = threading.Barrier(len(functions), timeout=TIMEOUT)
    results: list[object] = [None] * len(functions)

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = functions[index]()
        except Exception as exc:  # the test inspects it
            results[index] = exc
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(functions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a checkout hung"
    return results


@pytest.mark.django_db(transaction=True)
def test_the_last_unit_is_sold_only_once():
    # given two customers with the last unit in their carts
    product = make_product(stock=1)
    customers = [make_customer(), make_customer()]
    for customer in customers:
        cart_add_item(customer=customer, product_id=product.pk, quantity=1)

    def checkout(customer) -> Callable[[], object]:
        return lambda: order_place(
            customer=customer,
            address=ShippingAddress(**ADDRESS),
            delivery="standard",
            card=CardInput(**GOOD_CARD),
        )

    # when both check out at the same time
    results = in_threads([checkout(customer) for customer in customers])

    # then exactly one succeeds, the other is told about the cart, and stock is 0, not -1
    orders = [r for r in results if isinstance(r, Order)]
    refusals = [r for r in results if isinstance(r, OrderInvalid)]
    assert len(orders) == 1, results
    assert len(refusals) == 1, results
    assert set(refusals[0].errors) == {"cart"}
    assert Product.objects.get(pk=product.pk).stock == 0
    assert Order.objects.filter(lines__product=product).count() == 1
