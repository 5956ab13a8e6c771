"""Template context shared by every page: the size of the visitor's cart for the header."""

from django.http import HttpRequest


def cart_summary(request: HttpRequest) -> dict[str, int]:
    """Return ``cart_count``: the number of items in the signed-in customer's cart (0 otherwise)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"cart_count": 0}
    from apps.carts.selectors import cart_item_count

    return {"cart_count": cart_item_count(customer=user)}
