"""Build the payloads of the orders app's integration events from its models."""

from decimal import Decimal
from typing import Any

from apps.orders.models import Order


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def _customer(order: Order) -> dict[str, Any]:
    customer = order.customer
    return {
        "id": customer.pk,
        "email": customer.email,
        "name": customer.get_full_name() or customer.get_username(),
    }


def _lines(order: Order) -> list[dict[str, Any]]:
    return [
        {
            "product_id": line.product_id,
            "sku": line.sku,
            "name": line.name,
            "unit_price": _money(line.unit_price),
            "quantity": line.quantity,
        }
        for line in order.lines.all()
    ]


def order_placed_payload(order: Order) -> dict[str, Any]:
    """Payload of ``orders.order.placed`` v1."""
    return {
        "order_id": order.pk,
        "customer": _customer(order),
        "lines": _lines(order),
        "subtotal": _money(order.subtotal),
        "delivery_cost": _money(order.delivery_cost),
        "total": _money(order.total),
        "currency": order.currency,
        "address": {
            "name": order.ship_name,
            "street": order.ship_street,
            "city": order.ship_city,
            "zip": order.ship_zip,
            "country": order.ship_country,
        },
        "delivery": order.delivery_method,
        "payment": {
            "token": order.payment_token,
            "brand": order.card_brand,
            "last4": order.card_last4,
            "exp_month": order.card_exp_month,
            "exp_year": order.card_exp_year,
        },
        "placed_at": order.placed_at.isoformat(),
    }


def order_cancelled_payload(order: Order, *, previous_status: str, reason: str) -> dict[str, Any]:
    """Payload of ``orders.order.cancelled`` v1."""
    return {
        "order_id": order.pk,
        "customer": _customer(order),
        "previous_status": previous_status,
        "reason": reason,
        "total": _money(order.total),
        "lines": _lines(order),
        "cancelled_at": order.updated_at.isoformat(),
    }
