"""Every database connection has TCP keepalives: a vanished server is noticed within a minute."""

import pytest
from django.db import connections


@pytest.mark.django_db(databases="__all__")
@pytest.mark.parametrize("alias", ["default", "payments"])
def test_database_connections_send_keepalives_and_give_up_on_unacknowledged_data(alias):
    connection = connections[alias]
    connection.ensure_connection()
    # what libpq was actually given for the session (not only what the settings say)
    given = {option.keyword.decode(): option.val for option in connection.connection.pgconn.info}
    if alias != "default":
        connection.close()  # pytest-django closes only the aliases it set up
    assert given["keepalives"] == b"1"
    assert given["keepalives_idle"] == b"30"
    assert given["tcp_user_timeout"] == b"60000"
