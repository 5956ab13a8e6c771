"""The order status state machine owned by the monolith.

``pending_payment -> paid -> shipped -> delivered``, or ``pending_payment -> payment_failed``,
and ``pending_payment | paid -> cancelled`` (a paid order is refunded by the payments service).
"""

from apps.orders.models import OrderStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    OrderStatus.PENDING_PAYMENT: frozenset(
        {OrderStatus.PAID, OrderStatus.PAYMENT_FAILED, OrderStatus.CANCELLED}
    ),
    OrderStatus.PAID: frozenset({OrderStatus.SHIPPED, OrderStatus.CANCELLED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.DELIVERED}),
    OrderStatus.DELIVERED: frozenset(),
    OrderStatus.PAYMENT_FAILED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}
CANCELLABLE = frozenset({OrderStatus.PENDING_PAYMENT, OrderStatus.PAID})
# Nothing more will happen to an order in these states (the order page stops refreshing).
FINAL = frozenset(status for status, targets in TRANSITIONS.items() if not targets)


class InvalidTransition(Exception):
    """The order cannot move from its current status to the requested one."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"An order that is {current} cannot become {target}.")
        self.current = current
        self.target = target


def can_transition(current: str, target: str) -> bool:
    """Whether ``current -> target`` is allowed."""
    return target in TRANSITIONS.get(current, frozenset())


def ensure_transition(current: str, target: str) -> None:
    """Raise :class:`InvalidTransition` unless ``current -> target`` is allowed."""
    if not can_transition(current, target):
        raise InvalidTransition(current, target)
