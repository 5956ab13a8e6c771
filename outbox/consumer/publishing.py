"""Publishing retry and dead-letter copies with publisher confirms, on a connection of our own.

Why a separate connection: the worker consumes on its own connection (Celery's, in the
bootstep), and waiting for a confirm drains *every* frame of a py-amqp connection — on the
consuming connection that would dispatch the next delivery to our callback while we are still
inside it. A second connection keeps confirm waits and deliveries apart.

Why confirms and ``mandatory``: the original delivery is acknowledged only after the broker
confirmed that its copy is safely in a queue; an unroutable copy (``NO_ROUTE``, e.g. a missing
retry queue) comes back as a ``basic.return`` before the confirm, and is an error, not a loss.
"""

import logging

import amqp

from outbox.broker import CONNECTION_ERRORS, close_quietly, connect
from outbox.conf import get_settings
from outbox.exceptions import OutboxError

logger = logging.getLogger(__name__)


class CopyNotPublished(OutboxError):
    """The broker did not confirm a retry/dead copy: the original must not be acknowledged."""


class ConfirmedPublisher:
    """A lazily opened confirm-mode channel that publishes one message at a time.

    One at a time is enough here: copies are published only on failures, which are rare on a
    healthy system, and the ~1 ms confirm round trip is small next to a backoff delay.
    """

    def __init__(self, *, confirm_timeout: float) -> None:
        self.confirm_timeout = confirm_timeout
        self._connection: amqp.Connection | None = None
        self._channel: amqp.Channel | None = None
        self._returned: list[str] = []

    def publish(self, message: amqp.Message, *, exchange: str, routing_key: str) -> None:
        """Publish ``message`` and wait for the broker's confirm; reconnect once on a lost link."""
        try:
            self._publish(message, exchange, routing_key)
        except CONNECTION_ERRORS as exc:
            logger.warning("publisher connection lost (%s); reconnecting once", exc)
            self.close()
            try:
                self._publish(message, exchange, routing_key)
            except CONNECTION_ERRORS as again:
                self.close()
                raise CopyNotPublished(f"broker unreachable: {again}") from again
        except (amqp.exceptions.MessageNacked, amqp.exceptions.ChannelError) as exc:
            self.close()  # a channel error closes the channel: start afresh next time
            raise CopyNotPublished(f"broker refused the copy: {exc!r}") from exc

    def close(self) -> None:
        """Drop the connection (it is reopened by the next publish)."""
        close_quietly(self._connection)
        self._connection = self._channel = None

    def _publish(self, message: amqp.Message, exchange: str, routing_key: str) -> None:
        channel = self._ensure_channel()
        self._returned.clear()
        channel.basic_publish_confirm(
            message,
            exchange=exchange,
            routing_key=routing_key,
            mandatory=True,
            confirm_timeout=self.confirm_timeout,
        )
        if self._returned:
            raise CopyNotPublished(f"unroutable: {self._returned[0]}")

    def _ensure_channel(self) -> amqp.Channel:
        if self._channel is None:
            settings = get_settings()
            self._connection = connect(
                settings.broker_url, connect_timeout=settings.connect_timeout
            )
            # basic_publish_confirm puts the channel in confirm mode on its first publish.
            self._channel = self._connection.channel()
            self._channel.events["basic_return"].add(self._on_return)
        return self._channel

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: object) -> None:
        # Arrives before the confirm of the same message (RabbitMQ's ordering guarantee).
        self._returned.append(f"{exc} (exchange={exchange!r}, routing_key={routing_key!r})")
