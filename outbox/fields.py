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
    Key and containment lookups (``payload__order_id=...``) are ``jsonb`` operators and are not
    supported: filter on the table's indexed columns instead.
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

    def from_db_value(self, value: Any, expression: Any, connection: BaseDatabaseWrapper) -> Any:
        # psycopg decodes `json` columns itself (Django only turns that off for jsonb).
        if value is None or not isinstance(value, str):
            return value
        return super().from_db_value(value, expression, connection)
