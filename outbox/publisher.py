"""Publishing outbox rows to RabbitMQ with batched publisher confirms (py-amqp).

One *round* publishes a list of rows on a confirm-mode channel, then drains the connection until
every delivery tag is settled. Waiting once per round instead of once per message is what takes a
relay from ~1k to >10k msg/s. Each row ends the round in exactly one bucket:

* ``published`` - acked and not returned: safe to mark published;
* ``failed``    - this row's own problem (nack, unroutable, too large, missing exchange): retried
  with backoff, then parked;
* ``unsettled`` - the outcome is unknown because the channel or connection went away: left
  untouched and published again later (consumers deduplicate by event id).
"""

import contextlib
import logging
import re
import time
from dataclasses import dataclass, field

import amqp

from outbox.broker import CONNECTION_ERRORS, close_quietly, connect
from outbox.models import OutboxMessage
from outbox.wire import encode_body, encoded_size, envelope_headers, to_amqp

logger = logging.getLogger(__name__)

# RabbitMQ names the culprit in channel errors: "NOT_FOUND - no exchange 'x' in vhost '/'".
EXCHANGE_IN_ERROR = re.compile(r"exchange '([^']*)'")


@dataclass(frozen=True)
class Failure:
    """A row that could not be published, why, and whether retrying can ever help."""

    message: OutboxMessage
    error: str
    terminal: bool = False


@dataclass
class RoundResult:
    """What became of each row of one publish round (see the module docstring)."""

    published: list[OutboxMessage] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    unsettled: list[OutboxMessage] = field(default_factory=list)
    connection_error: BaseException | None = None


class Publisher:
    """A broker connection with a confirm-mode channel, publishing rows round by round."""

    def __init__(
        self,
        *,
        url: str,
        confirm_timeout: float,
        max_message_bytes: int,
        connect_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.confirm_timeout = confirm_timeout
        self.max_message_bytes = max_message_bytes
        self.connect_timeout = connect_timeout
        self._connection: amqp.Connection | None = None
        self._channel: amqp.Channel | None = None
        self._check_channel: amqp.Channel | None = None
        self._known_exchanges: set[str] = set()
        self._last_tag = 0
        # State of the round in progress, read by the confirm callbacks.
        self._inflight: dict[int, OutboxMessage] = {}
        self._returned: dict[str, str] = {}
        self._round = RoundResult()

    @property
    def connected(self) -> bool:
        """Whether a broker connection is open (it may still turn out to be dead on use)."""
        return self._connection is not None

    def connect(self) -> None:
        """Open the connection; raises one of ``broker.CONNECTION_ERRORS`` when it cannot."""
        self.close()
        self._connection = connect(self.url, connect_timeout=self.connect_timeout)

    def close(self) -> None:
        """Drop the connection and everything that depends on it."""
        connection, self._connection = self._connection, None
        self._channel = self._check_channel = None
        self._known_exchanges.clear()
        close_quietly(connection)

    def publish(self, messages: list[OutboxMessage]) -> RoundResult:
        """Publish ``messages`` in one confirm round and report what became of each row."""
        self._round = result = RoundResult()
        to_send: list[tuple[OutboxMessage, amqp.Message]] = []
        try:
            # One check per exchange and round, however many rows go to it.
            exchanges = {message.exchange for message in messages}
            missing = {name for name in exchanges if not self._exchange_exists(name)}
            for message in messages:
                # Headers built once, for the size check and the message itself.
                body, headers = encode_body(message), envelope_headers(message)
                problem = self._preflight(message, encoded_size(message, body, headers), missing)
                if problem is not None:
                    result.failed.append(problem)
                else:
                    to_send.append((message, to_amqp(message, body, headers)))
            if to_send:
                self._confirm_round(to_send)
        except CONNECTION_ERRORS as exc:
            # Whatever was not acked before the connection died is retried later, untouched.
            result.connection_error = exc
            settled = {m.id for m in result.published} | {f.message.id for f in result.failed}
            result.unsettled = [m for m, _ in to_send if m.id not in settled]
            self.close()
        return result

    def _preflight(self, message: OutboxMessage, size: int, missing: set[str]) -> Failure | None:
        """Catch the failures we can see before publishing, so they cannot spoil the round."""
        if size > self.max_message_bytes:
            # Terminal: the same bytes will be too large next time too. Parked at once.
            return Failure(
                message,
                f"message too large: {size} bytes > OUTBOX_MAX_MESSAGE_BYTES "
                f"({self.max_message_bytes})",
                terminal=True,
            )
        if message.exchange in missing:
            return Failure(message, f"exchange {message.exchange!r} does not exist (setup_broker?)")
        return None

    def _exchange_exists(self, name: str) -> bool:
        """Check with a passive declare, on a channel of its own because a miss closes it.

        Publishing to a missing exchange makes the broker close the publishing channel, which
        would throw away the confirms of the whole round; checking first keeps one bad row from
        failing its neighbours. Known exchanges are cached until the next channel error.
        """
        if name in self._known_exchanges or name == "":
            return True
        if self._check_channel is None:
            self._check_channel = self._require_connection().channel()
        try:
            self._check_channel.exchange_declare(name, "topic", passive=True)
        except amqp.exceptions.NotFound:
            # The broker closed the channel; py-amqp re-opens it in place, so keep it if it did.
            if not self._check_channel.is_open:
                self._check_channel = None
            return False
        self._known_exchanges.add(name)
        return True

    def _confirm_round(self, to_send: list[tuple[OutboxMessage, amqp.Message]]) -> None:
        channel = self._publish_channel()
        # Tags are known up front (the channel numbers publishes 1, 2, ...), so a channel error
        # half-way through the loop still accounts for the rows that were never sent.
        first_tag = self._last_tag + 1
        self._inflight = {first_tag + i: message for i, (message, _) in enumerate(to_send)}
        self._returned = {}
        self._last_tag += len(to_send)
        try:
            for message, amqp_message in to_send:
                # py-amqp may read incoming frames here too (acks, or the channel's closing).
                channel.basic_publish(
                    amqp_message,
                    exchange=message.exchange,
                    routing_key=message.routing_key,
                    mandatory=True,
                )
            deadline = time.monotonic() + self.confirm_timeout
            while self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no confirm within {self.confirm_timeout}s")
                self._require_connection().drain_events(timeout=remaining)
        except amqp.exceptions.ChannelError as exc:
            self._on_channel_closed(exc)

    def _on_channel_closed(self, exc: amqp.exceptions.ChannelError) -> None:
        """The broker closed the publishing channel mid-round (e.g. an exchange was deleted).

        Rows sent to the exchange the error names are failed; the other unsettled rows were
        innocent bystanders and are simply published again. When the error names no exchange we
        cannot tell, so every unsettled row is failed: retries with backoff sort them out.
        """
        logger.warning("broker closed the publishing channel: %s", exc)
        # py-amqp re-opened it in place, but without confirm mode: close it, start afresh.
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(amqp.exceptions.AMQPError, *CONNECTION_ERRORS):
                channel.close()
        self._known_exchanges.clear()
        match = EXCHANGE_IN_ERROR.search(str(exc))
        culprit = match.group(1) if match else None
        for message in self._inflight.values():
            if culprit is None or message.exchange == culprit:
                self._round.failed.append(Failure(message, f"channel closed by broker: {exc}"))
            else:
                self._round.unsettled.append(message)
        self._inflight = {}

    def _publish_channel(self) -> amqp.Channel:
        if self._channel is None:
            channel = self._require_connection().channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            channel.events["basic_return"].add(self._on_return)
            self._channel, self._last_tag = channel, 0
        return self._channel

    def _require_connection(self) -> amqp.Connection:
        if self._connection is None:
            raise amqp.exceptions.RecoverableConnectionError("not connected to the broker")
        return self._connection

    def _settle(self, tag: int, multiple: bool) -> list[OutboxMessage]:
        tags = [t for t in self._inflight if t <= tag] if multiple else [tag]
        return [self._inflight.pop(t) for t in tags if t in self._inflight]

    def _on_return(
        self, exc: Exception, exchange: str, routing_key: str, message: amqp.Message
    ) -> None:
        # With confirms on, the return of a mandatory message arrives before its ack.
        event_id = message.properties.get("message_id", "")
        self._returned[event_id] = f"unroutable: {exc} (exchange {exchange!r}, key {routing_key!r})"

    def _on_ack(self, tag: int, multiple: bool) -> None:
        for message in self._settle(tag, multiple):
            reason = self._returned.pop(str(message.event_id), None)
            if reason is None:
                self._round.published.append(message)
            else:
                self._round.failed.append(Failure(message, reason))

    def _on_nack(self, tag: int, multiple: bool) -> None:
        for message in self._settle(tag, multiple):
            self._round.failed.append(Failure(message, "nacked by the broker"))
