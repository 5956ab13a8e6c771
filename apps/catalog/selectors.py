"""Read-side queries of the catalog."""

from django.db.models import QuerySet

from apps.catalog.models import Product


def product_list(*, tag: str | None = None) -> QuerySet[Product]:
    """All products, by name; only those carrying ``tag`` when given."""
    products = Product.objects.all()
    if tag:
        products = products.filter(tags__contains=[tag])
    return products


def product_get(*, product_id: int) -> Product | None:
    """The product with this id, or ``None``."""
    return Product.objects.filter(pk=product_id).first()


def product_tags() -> list[str]:
    """Every tag used by at least one product, sorted (for the catalog's filter)."""
    tags: set[str] = set()
    for product_tag_list in Product.objects.values_list("tags", flat=True):
        tags.update(product_tag_list or [])
    return sorted(tags)
