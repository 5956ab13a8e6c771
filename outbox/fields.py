"""Model fields of the outbox."""

import json
from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper


class JSONTextField(models.JSONField):
    """A ``JSONField`` stored as PostgreSQL ``json`` (the text as written), not ``jsonb``.

    For documents that are written once and sent as they are, never searched inside: the relay
    reads the stored text and sends it as the message body with no conversion (turning ``jsonb``
    back into text was a third of the claim's cost), and PostgreSQL only checks the syntax at
    INSERT instead of building a binary form. Stored compact (no spaces), non-ASCII as UTF-8.
    ``json`` has no equality or containment operators: key lookups (``payload__order_id=...``),
    ``filter(payload=...)``, ``distinct()`` over it are not supported; filter on the table's
    indexed columns instead. ``None`` is SQL NULL, never JSON ``null``.
    """

    def db_type(self, connection: BaseDatabaseWrapper) -> str:
        return "json"

    def get_db_prep_value(
        self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False
    ) -> Any:
        if not prepared:
            value = self.get_prep_value(value)
        if value is None:
            return None
        return json.dumps(value, cls=self.encoder, separators=(",", ":"), ensure_ascii=False)

    def select_format(self, compiler: Any, sql: str, params: Any) -> tuple[str, Any]:
        # Read as text, decoded once by from_db_value with this field's decoder: psycopg would
        # decode a `json` column itself (Django only turns that off for jsonb), and a JSON
        # string document would then be decoded twice.
        sql, params = super().select_format(compiler, sql, params)
        return f"({sql})::text", params
