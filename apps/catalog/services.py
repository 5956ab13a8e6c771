"""Write-side services of the catalog."""

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db import transaction

from apps.catalog.models import Product

CATALOG_FILE = Path(__file__).resolve().parent / "data" / "catalog.json"


def catalog_load(*, path: Path = CATALOG_FILE, model: Any = Product) -> tuple[int, int]:
    """Create the catalog's products that are missing; return ``(created, already_there)``.

    Idempotent: an existing product (matched by SKU) is left alone, so running it again never
    resets stock that customers have already bought. ``model`` lets the data migration pass its
    historical model.
    """
    data = json.loads(path.read_text())
    created = 0
    with transaction.atomic():
        for item in data["products"]:
            _, was_created = model.objects.get_or_create(
                sku=item["sku"],
                defaults={
                    "name": item["name"],
                    "description": item.get("description", ""),
                    "price": Decimal(item["price"]),
                    "image": item["image"],
                    "tags": item.get("tags", []),
                    "stock": item.get("stock", 0),
                },
            )
            created += int(was_created)
    return created, len(data["products"]) - created
