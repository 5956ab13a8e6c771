"""``python manage.py ensure_demo_users``: the admin and ACME's seeded customers, for demos.

Only for `make run` on a developer's machine: the passwords are well known. Idempotent.
"""

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_CUSTOMERS = ("walter", "dwight", "eric", "han", "phoebe", "elaine")


class Command(BaseCommand):
    help = "Create the demo admin (admin/admin) and ACME's seeded customers if missing."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        admin_password = os.environ.get("DEMO_ADMIN_PASSWORD", "admin")
        customer_password = os.environ.get("DEMO_CUSTOMER_PASSWORD", "acme-fitness")
        if not users.objects.filter(username="admin").exists():
            users.objects.create_superuser("admin", "admin@acmefitness.com", admin_password)
            self.stdout.write("demo: created superuser 'admin'")
        for name in DEMO_CUSTOMERS:
            if not users.objects.filter(username=name).exists():
                users.objects.create_user(name, f"{name}@acmefitness.com", customer_password)
                self.stdout.write(f"demo: created customer {name!r}")
