"""Wake the relay at commit: NOTIFY on channel ``outbox`` whenever rows are inserted.

A statement-level trigger with a constant payload costs one notification per transaction
(PostgreSQL folds identical notifications of one transaction), and NOTIFY is only delivered when
the inserting transaction commits — exactly when the row becomes visible to the relay.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION outbox_message_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_message_notify
    AFTER INSERT ON outbox_message
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_message_notify();
"""

DROP = """
DROP TRIGGER IF EXISTS outbox_message_notify ON outbox_message;
DROP FUNCTION IF EXISTS outbox_message_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("outbox", "0001_initial")]

    operations = [migrations.RunSQL(CREATE, DROP)]
