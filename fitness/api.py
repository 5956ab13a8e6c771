"""The JSON API under /api/: one NinjaAPI with a router per domain app.

OpenAPI schema at /api/openapi.json, interactive docs at /api/docs.
"""

from ninja import NinjaAPI

from apps.accounts.api import router as accounts_router
from apps.carts.api import router as carts_router
from apps.catalog.api import router as catalog_router
from apps.orders.api import router as orders_router
from fitness.api_common import install_error_handlers

DESCRIPTION = """
The ACME Fitness shop as JSON: browse products, fill a cart, check out, follow an order.

**Authentication.** `POST /api/register`, then `POST /api/login` for an `access_token`; send it
as `Authorization: Bearer <token>`. Cart and order endpoints answer 401 without a valid token.

**Errors.** Every error has the same body, whatever raised it:
`{"detail": "Validation failed", "errors": [{"field": "card.number", "message": "..."}]}`.
`field` is a dotted path into the request body; `errors` is empty when no field is to blame.
Bad input is 422 (400 for a body that is not JSON) and changes nothing. Another customer's
order or cart item is 404, like a missing one. An unknown `product_id` in the body of
`POST /api/cart/items` is a 422 on field `product_id`; an unknown product in the URL is a 404.

**Money** is a string with two decimals (`"59.90"`), in the order's `currency`.
"""

api = NinjaAPI(
    title="ACME Fitness API",
    version="1.0.0",
    description=DESCRIPTION.strip(),
    docs_url="/docs",
    openapi_url="/openapi.json",
    urls_namespace="api",
)
install_error_handlers(api)
api.add_router("", accounts_router)
api.add_router("", catalog_router)
api.add_router("", carts_router)
api.add_router("", orders_router)
