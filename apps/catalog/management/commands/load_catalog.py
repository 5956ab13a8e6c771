"""``python manage.py load_catalog``: create the ACME products that are missing (idempotent)."""

from typing import Any

from django.core.management.base import BaseCommand

from apps.catalog.services import catalog_load


class Command(BaseCommand):
    help = "Create the ACME catalog's products that are missing; existing ones are left alone."

    def handle(self, *args: Any, **options: Any) -> None:
        created, existing = catalog_load()
        self.stdout.write(f"catalog: {created} created, {existing} already there")
