"""Production mails through SMTP with a timeout: a mail server that never answers fails the send
(the notifications worker retries the event later) instead of freezing the worker."""

import secrets
import socket

from tests.ops.test_security import manage, production_keys

SECRETS = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(64), "OUTBOX_SIGNING_KEYS": production_keys()}
CONNECTION = (
    "from django.core.mail import get_connection; "
    "connection = get_connection(); "
    "print(type(connection).__module__, connection.timeout)"
)
SEND_TO_SILENT_SERVER = """
import os, time
from django.core.mail import EmailMessage, get_connection

connection = get_connection(host="127.0.0.1", port=int(os.environ["SILENT_SMTP_PORT"]))
started = time.monotonic()
try:
    EmailMessage("Subject", "Body", to=["walter@example.com"], connection=connection).send()
except Exception as exc:
    print(round(time.monotonic() - started, 1), type(exc).__name__, exc)
"""


def test_production_mails_through_smtp_with_a_ten_second_timeout_by_default():
    result = manage("shell", "-v", "0", "-c", CONNECTION, timeout=60, **SECRETS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.core.mail.backends.smtp", "10.0"]


def test_a_mail_server_that_never_answers_fails_the_send_within_the_timeout():
    # given a mail server that accepts connections (the kernel completes the handshake) and
    # never says a word
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        # when production settings send a mail there, with a one-second timeout
        result = manage(
            "shell",
            "-v",
            "0",
            "-c",
            SEND_TO_SILENT_SERVER,
            timeout=30,  # without a timeout the send would wait forever
            DJANGO_EMAIL_TIMEOUT="1",
            SILENT_SMTP_PORT=str(port),
            **SECRETS,
        )
    # then the send fails after about a second (smtplib reports the socket's timeout as a lost
    # connection)
    assert result.returncode == 0, result.stderr
    seconds, error = result.stdout.strip().split(" ", 1)
    assert error == "SMTPServerDisconnected Connection unexpectedly closed: timed out"
    assert 0.5 <= float(seconds) < 5


SERVER = (
    "from django.core.mail import get_connection; c = get_connection(); "
    "print(c.host, c.port, c.username, c.use_tls, c.use_ssl)"
)


def test_production_reads_its_mail_server_from_the_environment():
    result = manage(
        "shell",
        "-v",
        "0",
        "-c",
        SERVER,
        timeout=60,
        DJANGO_EMAIL_HOST="smtp.example.com",
        DJANGO_EMAIL_PORT="587",
        DJANGO_EMAIL_HOST_USER="shop",
        DJANGO_EMAIL_USE_TLS="true",
        **SECRETS,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["smtp.example.com", "587", "shop", "True", "False"]


def test_production_refuses_tls_and_ssl_together():
    result = manage(
        "check", timeout=60, DJANGO_EMAIL_USE_TLS="1", DJANGO_EMAIL_USE_SSL="1", **SECRETS
    )
    assert result.returncode != 0
    assert "exclude each other" in result.stderr
