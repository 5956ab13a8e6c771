"""Load the ACME catalog so that the shop has products right after `migrate`."""

from django.db import migrations


def load_catalog(apps, schema_editor):
    from apps.catalog.services import catalog_load

    catalog_load(model=apps.get_model("catalog", "Product"))


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]

    operations = [migrations.RunPython(load_catalog, migrations.RunPython.noop)]
