"""Errors raised by cart services; each names the offending field and a reason for the customer."""


class CartError(Exception):
    """A cart change was refused; nothing was changed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class ProductNotFound(CartError):
    """The product does not exist."""


class ItemNotInCart(CartError):
    """The product is not in the cart."""
