"""JSON API of the catalog: the products and their stock (public, no token needed)."""

from typing import Any

from django.http import Http404, HttpRequest
from django.templatetags.static import static
from ninja import Router, Schema

from apps.catalog.models import Product
from apps.catalog.selectors import product_get, product_list
from fitness.api_common import ErrorOut, Id, Money, Text

router = Router(tags=["catalog"])


class ProductOut(Schema):
    id: int
    sku: str
    name: str
    description: str
    price: Money
    stock: int
    image_url: str
    tags: list[str]

    @staticmethod
    def resolve_image_url(obj: Product, context: dict[str, Any]) -> str:
        return context["request"].build_absolute_uri(static(obj.image_path))


@router.get("/products", response=list[ProductOut], summary="List products, by name")
def list_products(request: HttpRequest, tag: Text | None = None) -> Any:
    return product_list(tag=tag)


@router.get(
    "/products/{product_id}",
    response={200: ProductOut, 404: ErrorOut, 422: ErrorOut},
    summary="One product",
)
def get_product(request: HttpRequest, product_id: Id) -> Any:
    product = product_get(product_id=product_id)
    if product is None:
        raise Http404
    return product
