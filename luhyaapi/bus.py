"""The message bus: one interface, two implementations (RabbitMQ through pika, and in-process). Only this module
imports pika.

Contract, the same for both (``tests/integration/test_bus_contract.py`` proves it against each):
- ``publish`` returns only once the broker holds the message (publisher confirms; persistent message on a durable
  queue); while the broker is unreachable it retries with back-off up to ``publish_retry_seconds``, then raises
  ``BusUnavailable``. Nothing published after a broker restart is lost.
- ``consume`` runs until ``stop`` is set, handing the handler batches of decoded messages. A batch is acknowledged
  only after the handler returns, so a crash redelivers it (handlers must be idempotent). When the handler raises,
  each message of the batch is retried alone; a message that still fails, or that does not decode, is parked on the
  queue's dead-letter queue with the reason and logged, and the consumer goes on. ``RetryLater`` from the handler
  puts the batch back and pauses instead. A lost connection is re-made with back-off.
- Every message crosses the bus as JSON bytes, the in-process bus included.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import pika
import pika.exceptions

from luhyaapi.messages import InvalidMessage, Message, decode, encode
from luhyaapi.queues import dead_letters

logger = logging.getLogger(__name__)

Handler = Callable[[list[Message]], None]
_BACKOFF_START = 0.2
_BACKOFF_MAX = 5.0


class BusUnavailable(RuntimeError):
    """The broker could not take a message within the retry window."""


class RetryLater(Exception):
    """Raised by a handler when a dependency (the database, say) is down: the batch is redelivered later."""


@dataclass(frozen=True)
class DeadLetter:
    """A message parked on a dead-letter queue, with why it failed."""

    body: bytes
    reason: str


class Bus(ABC):
    """What every bus implementation offers; see the module docstring for the guarantees."""

    @abstractmethod
    def publish_raw(self, queue: str, body: bytes) -> None:
        """Put bytes on a queue (durably); used by ``publish`` and by tests that need malformed bodies."""

    @abstractmethod
    def consume(self, queue: str, handler: Handler, stop: threading.Event, *,
                max_batch: int = 200, max_wait: float = 0.05) -> None:
        """Block, handing batches (at most ``max_batch`` messages, waiting at most ``max_wait`` s to fill one)."""

    @abstractmethod
    def take_dead_letters(self, queue: str, limit: int = 1000) -> list[DeadLetter]:
        """Remove and return up to ``limit`` messages parked for ``queue``."""

    @abstractmethod
    def purge(self, queue: str) -> None:
        """Drop every message waiting on ``queue`` and on its dead-letter queue."""

    @abstractmethod
    def delete(self, queue: str) -> None:
        """Remove ``queue`` and its dead-letter queue with whatever they hold (a decommissioned node's queue)."""

    def close(self) -> None:  # noqa: B027 - most buses hold nothing to release
        """Release connections; the bus may be used again afterwards (it reconnects)."""

    def publish(self, queue: str, message: Message) -> None:
        self.publish_raw(queue, encode(message))

    @staticmethod
    def handle_batch(queue: str, handler: Handler, bodies: list[bytes]) -> list[DeadLetter]:
        """Decode and hand over a batch; return the messages to park. RetryLater propagates."""
        dead: list[DeadLetter] = []
        messages: list[Message] = []
        for body in bodies:
            try:
                messages.append(decode(body))
            except InvalidMessage as exc:
                dead.append(DeadLetter(body, str(exc)))
        if not messages:
            return dead
        try:
            handler(messages)
            return dead
        except RetryLater:
            raise
        except Exception as exc:
            if len(messages) == 1:
                logger.exception("bus: handler failed on %s message", queue)
                return dead + [DeadLetter(encode(messages[0]), _failure_reason(exc))]
        # The batch failed as a whole: retry one by one so one bad message cannot sink the others.
        for message in messages:
            try:
                handler([message])
            except RetryLater:
                raise
            except Exception as exc:
                logger.exception("bus: handler failed on %s message %s", queue, message.msg_id)
                dead.append(DeadLetter(encode(message), _failure_reason(exc)))
        return dead


def _failure_reason(exc: Exception) -> str:
    return f"handler error: {type(exc).__name__}: {exc}"


def _log_dead(queue: str, dead: list[DeadLetter]) -> None:
    for letter in dead:
        logger.error("bus: parked a message from %s on %s: %s", queue, dead_letters(queue), letter.reason)


class InProcessBus(Bus):
    """The embedded default: queues in this process's memory, with the same batching, acking and parking rules."""

    _shared: dict[str, InProcessBus] = {}
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        self._queues: dict[str, collections.deque[bytes]] = collections.defaultdict(collections.deque)
        self._dead: dict[str, collections.deque[DeadLetter]] = collections.defaultdict(collections.deque)
        self._cond = threading.Condition()

    @classmethod
    def shared(cls, url: str) -> InProcessBus:
        """One bus per URL per process, so every role of an all-in-one host meets on the same queues."""
        with cls._shared_lock:
            return cls._shared.setdefault(url, cls())

    def publish_raw(self, queue: str, body: bytes) -> None:
        with self._cond:
            self._queues[queue].append(bytes(body))
            self._cond.notify_all()

    def consume(self, queue: str, handler: Handler, stop: threading.Event, *,
                max_batch: int = 200, max_wait: float = 0.05) -> None:
        while not stop.is_set():
            with self._cond:
                pending = self._queues[queue]
                if not pending:
                    self._cond.wait(timeout=max_wait)
                    continue
                batch = [pending.popleft() for _ in range(min(max_batch, len(pending)))]
            try:
                dead = self.handle_batch(queue, handler, batch)
            except RetryLater as exc:
                logger.warning("bus: %s handler asked to retry later: %s", queue, exc)
                self._requeue(queue, batch)
                stop.wait(1.0)
                continue
            except BaseException:
                # The consumer dies (interrupt, exit): like an unacknowledged batch on RabbitMQ, it goes back.
                self._requeue(queue, batch)
                raise
            if dead:
                _log_dead(queue, dead)
                with self._cond:
                    self._dead[queue].extend(dead)

    def _requeue(self, queue: str, batch: list[bytes]) -> None:
        with self._cond:
            self._queues[queue].extendleft(reversed(batch))
            self._cond.notify_all()

    def take_dead_letters(self, queue: str, limit: int = 1000) -> list[DeadLetter]:
        with self._cond:
            parked = self._dead[queue]
            return [parked.popleft() for _ in range(min(limit, len(parked)))]

    def purge(self, queue: str) -> None:
        with self._cond:
            self._queues[queue].clear()
            self._dead[queue].clear()

    def delete(self, queue: str) -> None:
        with self._cond:
            self._queues.pop(queue, None)
            self._dead.pop(queue, None)


_RECOVERABLE = (pika.exceptions.AMQPError, OSError)


class RabbitMQBus(Bus):
    """RabbitMQ: durable queues, persistent messages, publisher confirms, manual acks, reconnect with back-off."""

    def __init__(self, url: str, *, publish_retry_seconds: float = 120.0, heartbeat: int = 30) -> None:
        self.url = url
        self.publish_retry_seconds = publish_retry_seconds
        self._params = pika.URLParameters(url)
        self._params.heartbeat = heartbeat
        self._params.blocked_connection_timeout = 60
        self._params.connection_attempts = 1
        self._params.socket_timeout = 5
        self._local = threading.local()

    def _connect(self) -> pika.adapters.blocking_connection.BlockingChannel:
        connection = pika.BlockingConnection(self._params)
        channel = connection.channel()
        channel.confirm_delivery()
        return channel

    @staticmethod
    def _declare(channel, queue: str) -> None:
        channel.queue_declare(queue=queue, durable=True)
        channel.queue_declare(queue=dead_letters(queue), durable=True)

    def _publisher(self):
        channel = getattr(self._local, "channel", None)
        if channel is not None and channel.is_open and channel.connection.is_open:
            # Lets an idle connection answer heartbeats or notice that the broker closed it.
            channel.connection.process_data_events(time_limit=0)
            if channel.is_open:
                return channel
        self._drop_publisher()
        self._local.channel = self._connect()
        self._local.declared = set()
        return self._local.channel

    def _drop_publisher(self) -> None:
        channel = getattr(self._local, "channel", None)
        self._local.channel = None
        if channel is not None:
            _close_quietly(channel.connection)

    def publish_raw(self, queue: str, body: bytes) -> None:
        deadline = time.monotonic() + self.publish_retry_seconds
        delay = _BACKOFF_START
        while True:
            try:
                channel = self._publisher()
                if queue not in self._local.declared:
                    self._declare(channel, queue)
                    self._local.declared.add(queue)
                channel.basic_publish(
                    exchange="", routing_key=queue, body=body, mandatory=True,
                    properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent,
                                                    content_type="application/json"))
                return
            except _RECOVERABLE as exc:
                self._drop_publisher()
                if time.monotonic() + delay > deadline:
                    raise BusUnavailable(f"could not publish to {queue} on {_safe_url(self.url)}: {exc!r}") from exc
                logger.warning("bus: publish to %s failed (%r); retrying in %.1fs", queue, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)

    def consume(self, queue: str, handler: Handler, stop: threading.Event, *,
                max_batch: int = 200, max_wait: float = 0.05) -> None:
        delay = _BACKOFF_START
        while not stop.is_set():
            channel = None
            try:
                channel = self._connect()
                self._declare(channel, queue)
                channel.basic_qos(prefetch_count=max_batch * 2)
                delay = _BACKOFF_START
                self._consume_on(channel, queue, handler, stop, max_batch, max_wait)
            except _RECOVERABLE as exc:
                logger.warning("bus: consumer of %s lost the broker (%r); reconnecting in %.1fs", queue, exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
            finally:
                if channel is not None:
                    _close_quietly(channel.connection)

    def _consume_on(self, channel, queue: str, handler: Handler, stop: threading.Event,
                    max_batch: int, max_wait: float) -> None:
        batch: list[tuple[int, bytes]] = []
        started = 0.0
        for method, _properties, body in channel.consume(queue, inactivity_timeout=max_wait):
            if method is not None:
                if not batch:
                    started = time.monotonic()
                batch.append((method.delivery_tag, body))
            if batch and (method is None or len(batch) >= max_batch or time.monotonic() - started >= max_wait):
                if not self._flush(channel, queue, handler, batch, stop):
                    return
                batch = []
            if stop.is_set():
                break
        channel.cancel()

    def _flush(self, channel, queue: str, handler: Handler, batch: list[tuple[int, bytes]],
               stop: threading.Event) -> bool:
        try:
            dead = self.handle_batch(queue, handler, [body for _tag, body in batch])
        except RetryLater as exc:
            logger.warning("bus: %s handler asked to retry later: %s", queue, exc)
            channel.basic_nack(delivery_tag=batch[-1][0], multiple=True, requeue=True)
            stop.wait(1.0)
            return False
        for letter in dead:
            channel.basic_publish(
                exchange="", routing_key=dead_letters(queue), body=letter.body,
                properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent,
                                                content_type="application/json",
                                                headers={"x-educloud-reason": letter.reason[:1000]}))
        _log_dead(queue, dead)
        channel.basic_ack(delivery_tag=batch[-1][0], multiple=True)
        return True

    def take_dead_letters(self, queue: str, limit: int = 1000) -> list[DeadLetter]:
        channel = self._connect()
        try:
            self._declare(channel, queue)
            parked = []
            while len(parked) < limit:
                method, properties, body = channel.basic_get(dead_letters(queue), auto_ack=True)
                if method is None:
                    break
                reason = (properties.headers or {}).get("x-educloud-reason", "")
                parked.append(DeadLetter(body, reason))
            return parked
        finally:
            _close_quietly(channel.connection)

    def purge(self, queue: str) -> None:
        channel = self._connect()
        try:
            self._declare(channel, queue)
            channel.queue_purge(queue)
            channel.queue_purge(dead_letters(queue))
        finally:
            _close_quietly(channel.connection)

    def delete(self, queue: str) -> None:
        channel = self._connect()
        try:
            channel.queue_delete(queue)
            channel.queue_delete(dead_letters(queue))
        finally:
            _close_quietly(channel.connection)
        if getattr(self._local, "declared", None):
            self._local.declared.discard(queue)

    def close(self) -> None:
        self._drop_publisher()


def _close_quietly(connection) -> None:
    try:
        if connection.is_open:
            connection.close()
    except _RECOVERABLE as exc:
        logger.debug("bus: closing a broken connection: %r", exc)


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 5672}{parts.path}"


_buses: dict[str, Bus] = {}
_buses_lock = threading.Lock()


def get_bus(url: str) -> Bus:
    """The bus for a URL (``memory://...`` or ``amqp://...``), one instance per URL per process."""
    with _buses_lock:
        if url not in _buses:
            scheme = urlsplit(url).scheme
            if scheme == "memory":
                _buses[url] = InProcessBus.shared(url)
            elif scheme in ("amqp", "amqps"):
                _buses[url] = RabbitMQBus(url)
            else:
                raise ValueError(f"unsupported bus URL {url!r} (use memory:// or amqp://)")
        return _buses[url]
