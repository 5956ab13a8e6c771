"""Errors raised by order services."""


class OrderInvalid(Exception):
    """Checkout was refused; ``errors`` maps each bad field (``address.city``, ``card.cvv``,
    ``cart``...) to a reason for the customer. Nothing was changed."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in errors.items()))
        self.errors = errors


class OrderNotFound(Exception):
    """No such order for this customer (another customer's order is 'not found' too)."""


class OrderNotCancellable(Exception):
    """The order has gone too far (shipped, delivered, failed or cancelled) to be cancelled."""
