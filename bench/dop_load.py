"""Load N rows into django-outbox-pattern's ``published`` table (run under bench.dop_settings).

``python -m bench.dop_load N DESTINATION``. Rows get the headers the package's own
``Published.save()`` would give them (``get_message_headers``), then one ``bulk_create``.
"""

import sys

import django


def main() -> None:
    """Replace the table's rows with N scheduled messages for DESTINATION."""
    django.setup()
    from django_outbox_pattern.headers import get_message_headers
    from django_outbox_pattern.models import Published

    from bench.rows import order_payload

    n, destination = int(sys.argv[1]), sys.argv[2]
    Published.objects.all().delete()
    rows = []
    for i in range(n):
        row = Published(destination=destination, body=order_payload(i + 1))
        row.headers = get_message_headers(row)
        rows.append(row)
    Published.objects.bulk_create(rows, batch_size=2000)
    print(f"loaded {n} rows")


if __name__ == "__main__":
    main()
