"""Web views of the catalog: the product grid and a product's page."""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from apps.catalog import selectors


@require_safe
def product_list(request: HttpRequest) -> HttpResponse:
    """Every product as a card; ``?tag=`` narrows the grid to one tag."""
    tag = request.GET.get("tag", "").strip() or None
    context = {
        "products": selectors.product_list(tag=tag),
        "tags": selectors.product_tags(),
        "active_tag": tag,
    }
    return render(request, "catalog/product_list.html", context)


@require_safe
def product_detail(request: HttpRequest, product_id: int) -> HttpResponse:
    """One product with its description, stock and an add-to-cart form."""
    product = selectors.product_get(product_id=product_id)
    if product is None:
        raise Http404("No such product.")
    return render(request, "catalog/product_detail.html", {"product": product})
