"""The API documents itself: OpenAPI schema and docs page."""

import pytest

pytestmark = pytest.mark.django_db

PATHS = {
    "/api/register": {"post"},
    "/api/login": {"post"},
    "/api/products": {"get"},
    "/api/products/{product_id}": {"get"},
    "/api/cart": {"get"},
    "/api/cart/items": {"post"},
    "/api/cart/items/{product_id}": {"patch", "delete"},
    "/api/orders": {"get", "post"},
    "/api/orders/{order_id}": {"get"},
    "/api/orders/{order_id}/cancel": {"post"},
}


def test_the_openapi_schema_lists_every_endpoint(client):
    # when
    response = client.get("/api/openapi.json")

    # then
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "ACME Fitness API"
    assert {path: set(ops) for path, ops in schema["paths"].items()} == PATHS


def test_protected_endpoints_declare_the_bearer_scheme(client):
    schema = client.get("/api/openapi.json").json()
    assert schema["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"
    assert schema["paths"]["/api/orders"]["post"]["security"] == [{"BearerAuth": []}]
    assert "security" not in schema["paths"]["/api/products"]["get"]


def test_no_response_schema_has_a_field_for_the_card_number_or_cvv(client):
    schemas = client.get("/api/openapi.json").json()["components"]["schemas"]
    order_fields = set(schemas["OrderOut"]["properties"]) | set(schemas["PaymentOut"]["properties"])
    assert not order_fields & {"number", "cvv", "card", "payment_token", "token"}


def test_the_docs_page_loads(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert b"openapi.json" in response.content
