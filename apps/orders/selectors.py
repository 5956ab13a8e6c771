"""Read-side queries of orders. A customer only ever sees their own orders."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from apps.orders.models import Order


def order_list_for_customer(*, customer: AbstractBaseUser) -> QuerySet[Order]:
    """The customer's orders, newest first, with their lines."""
    return Order.objects.filter(customer=customer).prefetch_related("lines")


def order_get_for_customer(*, customer: AbstractBaseUser, order_id: int) -> Order | None:
    """The order if it belongs to the customer, else ``None`` (callers answer 404 either way)."""
    return (
        Order.objects.filter(pk=order_id, customer=customer)
        .prefetch_related("lines", "timeline")
        .first()
    )
