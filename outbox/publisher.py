"""Publishing outbox rows to RabbitMQ with publisher confirms, many rows in flight (py-amqp).

``send()`` publishes rows on a confirm-mode channel without waiting; ``collect()`` reads the
confirms that arrived and reports what became of each row since the last call. The relay keeps
sending and claiming while earlier rows' confirms are outstanding. ``publish()`` is one
*round* on top of the two (send, then collect until every row is settled), for callers that
want exactly that (replay). Waiting once per round or window instead of once per message is what
takes a relay from ~1k to >10k msg/s. Each row ends in exactly one bucket:

* ``published`` - acked and not returned: safe to mark published;
* ``failed``    - this row's own problem (nack, unroutable, missing exchange): retried with
  backoff, then parked; too large or not encodable as AMQP: parked at once;
* ``unsettled`` - the outcome is unknown because the channel or connection went away: left
  untouched and published again later (consumers deduplicate by event id).
"""

import contextlib
import logging
import re
import struct
import time
from collections import deque
from dataclasses import dataclass, field

import amqp
from amqp import spec

from outbox.broker import CLOSE_TIMEOUT, CONNECTION_ERRORS, close_quietly, connect, drop
from outbox.framing import fits_shortstr, header_frame_size, method_frame, publish_pieces
from outbox.models import OutboxMessage
from outbox.wire import encode_body, encoded_properties

logger = logging.getLogger(__name__)

# RabbitMQ names the culprit in channel errors: "NOT_FOUND - no exchange 'x' in vhost '/'".
EXCHANGE_IN_ERROR = re.compile(r"exchange '([^']*)'")
# Encoded frames are written to the socket in chunks of about this many bytes (one syscall each).
WRITE_CHUNK_BYTES = 128 * 1024


@dataclass(frozen=True)
class Failure:
    """A row that could not be published, why, and whether retrying can ever help."""

    message: OutboxMessage
    error: str
    terminal: bool = False


@dataclass
class RoundResult:
    """What became of rows since the last ``collect()`` (or of one round; see the module
    docstring). ``connection_error`` is set when the connection was lost meanwhile."""

    published: list[OutboxMessage] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    unsettled: list[OutboxMessage] = field(default_factory=list)
    connection_error: BaseException | None = None


class Publisher:
    """A broker connection with a confirm-mode channel, publishing rows with confirms."""

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
        # Rows sent and not settled yet, by delivery tag. Tags are consecutive, so a "multiple"
        # ack settles the range from the lowest unsettled tag up: no scan of the whole dict.
        self._inflight: dict[int, OutboxMessage] = {}
        self._lowest_tag = 1
        self._confirm_deadline = 0.0
        # (last tag, monotonic time) of each send(), to time it until its last row is settled.
        self._sends: deque[tuple[int, float]] = deque()
        self._round_times: list[float] = []
        self._returned: dict[str, str] = {}
        # Outcomes settled since the last collect(), filled by the confirm callbacks.
        self._settled = RoundResult()

    @property
    def connected(self) -> bool:
        """Whether a broker connection is open (it may still turn out to be dead on use)."""
        return self._connection is not None

    @property
    def in_flight(self) -> int:
        """How many sent rows wait for their confirm."""
        return len(self._inflight)

    def fileno(self) -> int | None:
        """The socket confirms arrive on (to wait for them together with other sockets)."""
        if self._connection is None or self._connection.sock is None:
            return None
        return self._connection.sock.fileno()

    def take_round_times(self) -> list[float]:
        """Seconds from each ``send()`` to the confirm of its last row, settled since the last
        call (the ``outbox_relay_publish_seconds`` histogram)."""
        times, self._round_times = self._round_times, []
        return times

    def connect(self) -> None:
        """Open the connection; raises one of ``broker.CONNECTION_ERRORS`` when it cannot."""
        self.close()
        self._connection = connect(self.url, connect_timeout=self.connect_timeout)

    def close(self) -> None:
        """Close the connection (gracefully if the broker answers within ``CLOSE_TIMEOUT``) and
        drop everything that depends on it, rows in flight included (their outcome is unknown:
        they stay pending and are published again)."""
        close_quietly(self._forget_connection())

    def _forget_connection(self) -> amqp.Connection | None:
        """Forget the connection and its state; the connection, for the caller to close."""
        connection, self._connection = self._connection, None
        self._channel = self._check_channel = None
        self._known_exchanges.clear()
        self._inflight, self._returned, self._settled = {}, {}, RoundResult()
        self._sends.clear()
        return connection

    def publish(self, messages: list[OutboxMessage]) -> RoundResult:
        """Publish ``messages`` in one confirm round and report what became of each row."""
        self.send(messages)
        result = self.collect()
        while self._inflight and result.connection_error is None:
            result = _merge(result, self.collect(timeout=self.confirm_timeout))
        return result

    def send(self, messages: list[OutboxMessage]) -> None:
        """Publish ``messages`` without waiting for their confirms (see ``collect()``).

        Never raises for a broker problem: a lost connection or a closed channel is reported
        by the next ``collect()``, with the rows it concerns.
        """
        if not messages:
            return
        try:
            # One check per exchange and call, however many rows go to it. A name AMQP cannot
            # carry is not asked about: its rows fail in _write().
            exchanges = {message.exchange for message in messages}
            missing = {
                name
                for name in exchanges
                if fits_shortstr(name) and not self._exchange_exists(name)
            }
            self._write(messages, missing)
        except amqp.exceptions.ChannelError as exc:
            self._on_channel_closed(exc)
            self._account_for(messages)
        except CONNECTION_ERRORS as exc:
            self._lose_connection(exc)
            self._account_for(messages)

    def _account_for(self, messages: list[OutboxMessage]) -> None:
        """Rows of an interrupted ``send()`` that were never written (the error came first, e.g.
        from an exchange check or opening the channel): unsettled, so the relay releases them
        and publishes them again, instead of holding them — and their aggregates — forever."""
        reported = {id(m) for m in self._settled.unsettled}
        reported.update(id(failure.message) for failure in self._settled.failed)
        self._settled.unsettled += [m for m in messages if id(m) not in reported]

    def collect(self, timeout: float = 0.0) -> RoundResult:
        """What became of sent rows since the last call.

        Reads every confirm that already arrived; when none has and rows are in flight, waits up
        to ``timeout`` seconds for the first. Rows unconfirmed for ``confirm_timeout`` count as
        a lost connection (the broker may be blocked or gone): they come back ``unsettled``.
        """
        try:
            if self._inflight:
                self._read_confirms(timeout)
            if self._inflight and time.monotonic() > self._confirm_deadline:
                raise TimeoutError(f"no confirm within {self.confirm_timeout}s")
        except amqp.exceptions.ChannelError as exc:
            self._on_channel_closed(exc)
        except CONNECTION_ERRORS as exc:
            self._lose_connection(exc)
        result, self._settled = self._settled, RoundResult()
        return result

    def _write(self, messages: list[OutboxMessage], missing: set[str]) -> None:
        channel_id = self._publish_channel().channel_id
        connection = self._require_connection()
        frame_max = connection.frame_max
        if not self._inflight:
            self._confirm_deadline = time.monotonic() + self.confirm_timeout
        # The frames' pieces of many messages, joined and written once per WRITE_CHUNK_BYTES.
        frames: list[bytes] = []
        size = 0
        for message in messages:
            # Properties (the CloudEvents headers among them) encoded once, for the size check
            # and the frames.
            body = encode_body(message)
            try:
                properties = encoded_properties(message)
                method = method_frame(channel_id, message.exchange, message.routing_key, True)
            except (ValueError, TypeError, struct.error) as exc:
                # Terminal: e.g. a property or an exchange name over a shortstr's 255 bytes.
                # Raised out of here it would stop the relay at this row on every restart.
                failure = Failure(message, f"cannot be encoded as AMQP: {exc}", terminal=True)
                self._settled.failed.append(failure)
                continue
            problem = self._preflight(message, body, properties, frame_max, missing)
            if problem is not None:
                self._settled.failed.append(problem)
                continue
            # Registered before it is written: if the write fails, the row is still accounted
            # for (unsettled) rather than forgotten.
            self._last_tag += 1
            self._inflight[self._last_tag] = message
            frames += publish_pieces(method, channel_id, frame_max, body, properties)
            size += len(body) + len(properties)  # the frames' overhead does not matter here
            if size >= WRITE_CHUNK_BYTES:
                connection.transport.write(b"".join(frames))
                frames, size = [], 0
        if frames:
            connection.transport.write(b"".join(frames))
        if self._inflight:
            self._sends.append((self._last_tag, time.monotonic()))

    def _read_confirms(self, timeout: float) -> None:
        """Dispatch every frame already received, waiting up to ``timeout`` for the first."""
        connection = self._require_connection()
        wait = timeout
        while self._inflight:
            try:
                connection.drain_events(timeout=wait)
            except TimeoutError:  # socket.timeout: nothing more has arrived
                return
            wait = 0.0

    def _lose_connection(self, exc: BaseException) -> None:
        """Whatever was not confirmed before the connection died is retried later, untouched.

        The connection is dropped without the close handshake: after an error the broker may
        never answer (under a resource alarm it stops reading), and py-amqp would wait forever.
        """
        settled = self._settled
        settled.unsettled += self._inflight.values()
        settled.connection_error = exc
        drop(self._forget_connection())
        self._settled = settled

    def _preflight(
        self,
        message: OutboxMessage,
        body: bytes,
        properties: bytes,
        frame_max: int,
        missing: set[str],
    ) -> Failure | None:
        """Catch the failures we can see before publishing, so they cannot spoil the others."""
        size = len(body) + len(properties)
        if size > self.max_message_bytes:
            # Terminal: the same bytes will be too large next time too. Parked at once.
            return Failure(
                message,
                f"message too large: {size} bytes > OUTBOX_MAX_MESSAGE_BYTES "
                f"({self.max_message_bytes})",
                terminal=True,
            )
        header = header_frame_size(properties)
        if header > frame_max:
            # Terminal too. Sent, it would make the broker close the whole connection, and the
            # relay would claim this row first again after reconnecting, forever.
            return Failure(
                message,
                f"properties and headers too large: {len(properties)} bytes make a content "
                f"header frame of {header} bytes > the connection's frame_max ({frame_max}); "
                "AMQP cannot split a header over frames",
                terminal=True,
            )
        if message.exchange in missing:
            return Failure(message, f"exchange {message.exchange!r} does not exist (setup_broker?)")
        return None

    def _exchange_exists(self, name: str) -> bool:
        """Check with a passive declare, on a channel of its own because a miss closes it.

        Publishing to a missing exchange makes the broker close the publishing channel, which
        would throw away the confirms of every row in flight; checking first keeps one bad row
        from failing its neighbours. Known exchanges are cached until the next channel error.
        """
        if name in self._known_exchanges or name == "":
            return True
        connection = self._require_connection()
        if self._check_channel is None:
            self._check_channel = connection.channel()
        try:
            # Bounded: py-amqp waits for the answer forever, and a broker under a resource alarm
            # stops reading a connection that published. Timed out, the connection is dropped.
            with connection.transport.having_timeout(self.confirm_timeout):
                self._check_channel.exchange_declare(name, "topic", passive=True)
        except amqp.exceptions.ChannelError as exc:
            if (
                isinstance(exc, amqp.exceptions.NotFound)
                and exc.method_sig == spec.Exchange.Declare
            ):
                # The answer: the broker closed the check channel; py-amqp re-opens it in place,
                # so keep it if it did.
                if not self._check_channel.is_open:
                    self._check_channel = None
                if self._channel is not None and not self._channel._confirm_selected:
                    # py-amqp also read the broker's close of the publishing channel meanwhile
                    # and re-opened it in place (clearing its flag), but lost that error to
                    # this one: handle it as that close, culprit unknown.
                    raise amqp.exceptions.ChannelError(
                        "the broker closed the publishing channel (the reason was lost)"
                    ) from exc
                return False
            # Read while waiting for the answer, the close of another channel: the publishing
            # one (an exchange deleted under rows in flight). send() handles it as such. The
            # answer may still come, and would be taken for the next check's: start afresh.
            channel, self._check_channel = self._check_channel, None
            self._close_channel(channel)
            raise
        self._known_exchanges.add(name)
        return True

    def _close_channel(self, channel: amqp.Channel) -> None:
        """Close ``channel``, waiting for the broker's answer at most ``CLOSE_TIMEOUT`` seconds
        (py-amqp alone waits forever); raises one of ``CONNECTION_ERRORS`` if the connection
        cannot go on (it must then be dropped: a write may have stopped half-way)."""
        transport = self._require_connection().transport
        quietly = contextlib.suppress(amqp.exceptions.ChannelError)  # the channel is gone anyway
        with transport.having_timeout(CLOSE_TIMEOUT), quietly:
            channel.close()

    def _on_channel_closed(self, exc: amqp.exceptions.ChannelError) -> None:
        """The broker closed the publishing channel with rows in flight (e.g. an exchange was
        deleted).

        Rows sent to the exchange the error names are failed; the other unsettled rows were
        innocent bystanders and are simply published again. When the error names no exchange we
        cannot tell, so every unsettled row is failed: retries with backoff sort them out.
        """
        logger.warning("broker closed the publishing channel: %s", exc)
        # py-amqp re-opened it in place, but without confirm mode: close it, start afresh.
        channel, self._channel = self._channel, None
        broken: BaseException | None = None
        if channel is not None:
            try:
                self._close_channel(channel)
            except CONNECTION_ERRORS as error:
                broken = error
        self._known_exchanges.clear()
        match = EXCHANGE_IN_ERROR.search(str(exc))
        culprit = match.group(1) if match else None
        for message in self._inflight.values():
            if culprit is None or message.exchange == culprit:
                self._settled.failed.append(Failure(message, f"channel closed by broker: {exc}"))
            else:
                self._settled.unsettled.append(message)
        self._inflight = {}
        self._returned = {}
        self._sends.clear()
        if broken is not None:
            self._lose_connection(broken)

    def _publish_channel(self) -> amqp.Channel:
        if self._channel is None:
            channel = self._require_connection().channel()
            channel.confirm_select()
            # py-amqp's own flag (its basic_publish_confirm sets it): py-amqp clears it when it
            # re-opens the channel in place after the broker closed it, see _exchange_exists().
            channel._confirm_selected = True
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            channel.events["basic_return"].add(self._on_return)
            self._channel, self._last_tag, self._lowest_tag = channel, 0, 1
        return self._channel

    def _require_connection(self) -> amqp.Connection:
        if self._connection is None:
            raise amqp.exceptions.RecoverableConnectionError("not connected to the broker")
        return self._connection

    def _settle(self, tag: int, multiple: bool) -> list[OutboxMessage]:
        self._confirm_deadline = time.monotonic() + self.confirm_timeout
        if not multiple:
            message = self._inflight.pop(tag, None)
            settled = [] if message is None else [message]
        else:
            pop = self._inflight.pop
            settled = [m for t in range(self._lowest_tag, tag + 1) if (m := pop(t, None))]
            self._lowest_tag = max(self._lowest_tag, tag + 1)
        # A single ack of the lowest tag (or acks out of order) moves the floor too.
        while self._lowest_tag <= self._last_tag and self._lowest_tag not in self._inflight:
            self._lowest_tag += 1
        while self._sends and self._sends[0][0] < self._lowest_tag:
            self._round_times.append(time.monotonic() - self._sends.popleft()[1])
        return settled

    def _on_return(
        self, exc: Exception, exchange: str, routing_key: str, message: amqp.Message
    ) -> None:
        # With confirms on, the return of a mandatory message arrives before its ack.
        event_id = message.properties.get("message_id", "")
        self._returned[event_id] = f"unroutable: {exc} (exchange {exchange!r}, key {routing_key!r})"

    def _on_ack(self, tag: int, multiple: bool) -> None:
        for message in self._settle(tag, multiple):
            reason = self._returned.pop(str(message.event_id), None) if self._returned else None
            if reason is None:
                self._settled.published.append(message)
            else:
                self._settled.failed.append(Failure(message, reason))

    def _on_nack(self, tag: int, multiple: bool) -> None:
        for message in self._settle(tag, multiple):
            self._settled.failed.append(Failure(message, "nacked by the broker"))


def _merge(first: RoundResult, second: RoundResult) -> RoundResult:
    return RoundResult(
        published=first.published + second.published,
        failed=first.failed + second.failed,
        unsettled=first.unsettled + second.unsettled,
        connection_error=first.connection_error or second.connection_error,
    )
