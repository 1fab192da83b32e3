"""The message bus: one interface, two implementations (RabbitMQ through pika, and in-process). Only this module
imports pika.

Contract, the same for both (``tests/integration/test_bus_contract.py`` proves it against each):
- ``publish`` seals the message with this host's key (``luhyaapi.signing.seal``: an envelope naming the sender, whose
  signature covers the queue's name and the message's JSON bytes) and returns only once the broker holds it
  (publisher confirms; persistent message on a durable queue); while the broker is unreachable it retries with
  back-off up to ``publish_retry_seconds``, then raises ``BusUnavailable``. What ``publish`` returned for survives a
  crash of the broker (kill -9) and its restart; a publish under way at the crash is sent again once the broker is
  back, so the message may arrive twice, and one that raised may have reached the queue all the same
  (``tests/integration/test_broker_crash.py``).
- ``consume`` runs until ``stop`` is set, handing the handler batches of checked, decoded messages. Every message is
  checked first: signed by a trusted host (``luhyaapi.trust``) for this queue, and allowed there by the queue's
  policy (``luhyaapi.bus_trust``); one that is not is refused: parked on the queue's dead-letter queue with the
  reason, logged on ``educloud.security``, never handed over. A batch is acknowledged only after the handler returns,
  so a crash redelivers it (handlers must be idempotent). When the handler raises, each message of the batch is
  retried alone; a message that still fails, or that does not decode, is parked with the reason and logged, and the
  consumer goes on. ``RetryLater`` from the handler (or from the trust records) puts the batch back and pauses
  instead. A lost connection is re-made with back-off.
- Every message crosses the bus as the same bytes, a JSON envelope with the message's JSON inside, the in-process bus
  included; a parked message keeps its envelope (who sent it, and the signature).

Why an envelope in the body rather than AMQP headers: both buses then carry bytes and nothing else (the in-process
bus has no headers to fake, and whatever carries commands after RabbitMQ carries bytes too), a parked message keeps
its sender and signature wherever it is moved, and the signature covers the exact bytes the consumer decodes, never
a re-encoding of them.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import pika
import pika.exceptions

from luhyaapi.keys import HostKey
from luhyaapi.messages import InvalidMessage, Message, decode, encode
from luhyaapi.queues import dead_letters, max_bytes
from luhyaapi.signing import BadEnvelope, seal, unseal, verify_sealed
from luhyaapi.trust import own_key

logger = logging.getLogger(__name__)
security = logging.getLogger("educloud.security")

Handler = Callable[[list[Message]], None]
_BACKOFF_START = 0.2
_BACKOFF_MAX = 5.0


class BusUnavailable(RuntimeError):
    """The broker could not take a message within the retry window."""


class RetryLater(Exception):
    """Raised by a handler when a dependency (the database, say) is down: the batch is redelivered later."""


@dataclass(frozen=True)
class DeadLetter:
    """A message parked on a dead-letter queue (its envelope as it came), with why it failed."""

    body: bytes
    reason: str


class Policy(Protocol):
    """Who may put what on a queue (``luhyaapi.bus_trust.QueuePolicy``)."""

    def batch(self, queue: str):
        """What the checks of one batch share: the hosts looked up (``peer``, ``preload``)."""

    def refusals(self, batch, items: list) -> list[str]:
        """For each (sender, message), why it is refused ("" if it is not)."""


def _policy_for(queue: str) -> Policy:
    from luhyaapi.bus_trust import policy_for  # imported here: it raises this module's RetryLater

    return policy_for(queue)


class Bus(ABC):
    """What every bus implementation offers; see the module docstring for the guarantees."""

    @abstractmethod
    def publish_raw(self, queue: str, body: bytes) -> None:
        """Put bytes on a queue (durably); used by ``publish`` and by tests that need malformed bodies."""

    @abstractmethod
    def consume(self, queue: str, handler: Handler, stop: threading.Event, *,
                max_batch: int = 200, max_wait: float = 0.05, policy: Policy | None = None) -> None:
        """Block, handing batches (at most ``max_batch`` messages, waiting at most ``max_wait`` s to fill one) of the
        messages ``policy`` takes (the queue's own, ``luhyaapi.bus_trust.policy_for``, by default)."""

    @abstractmethod
    def take_dead_letters(self, queue: str, limit: int = 1000) -> list[DeadLetter]:
        """Remove and return up to ``limit`` messages parked for ``queue``."""

    @abstractmethod
    def purge(self, queue: str) -> None:
        """Drop every message waiting on ``queue`` and on its dead-letter queue."""

    @abstractmethod
    def delete(self, queue: str) -> None:
        """Remove ``queue`` and its dead-letter queue with whatever they hold (a decommissioned node's queue)."""

    def check(self) -> str:
        """Prove the bus can be reached now (the console's health check): what was reached, or BusUnavailable."""
        return "the in-process bus of this process"

    def close(self) -> None:  # noqa: B027 - most buses hold nothing to release
        """Release connections; the bus may be used again afterwards (it reconnects)."""

    def publish(self, queue: str, message: Message, key: HostKey | None = None) -> None:
        """Seal ``message`` for ``queue`` with ``key`` (this host's own by default) and put it there."""
        self.publish_raw(queue, seal(key or own_key(), queue, encode(message)))

    @staticmethod
    def handle_batch(queue: str, handler: Handler, bodies: list[bytes], policy: Policy) -> list[DeadLetter]:
        """Check, decode and hand over a batch; return the messages to park. RetryLater propagates."""
        dead, taken = admit(queue, bodies, policy)
        if not taken:
            return dead
        try:
            handler([message for _body, message in taken])
            return dead
        except RetryLater:
            raise
        except Exception as exc:
            if len(taken) == 1:
                logger.exception("bus: handler failed on %s message", queue)
                return dead + [DeadLetter(taken[0][0], _failure_reason(exc))]
        # The batch failed as a whole: retry one by one so one bad message cannot sink the others.
        for body, message in taken:
            try:
                handler([message])
            except RetryLater:
                raise
            except Exception as exc:
                logger.exception("bus: handler failed on %s message %s", queue, message.msg_id)
                dead.append(DeadLetter(body, _failure_reason(exc)))
        return dead


def admit(queue: str, bodies: list[bytes], policy: Policy) -> tuple[list[DeadLetter], list[tuple[bytes, Message]]]:
    """Split a batch into what to park and what to hand over (each with its body): a message is handed over only
    if it is sealed for this queue by a trusted host, decodes, and ``policy`` allows it."""
    dead: list[DeadLetter] = []
    opened = []
    for body in bodies:
        try:
            opened.append((body, unseal(body)))
        except BadEnvelope as exc:
            dead.append(_refused(queue, body, "", str(exc)))
    batch = policy.batch(queue)
    batch.preload(sealed.sender for _body, sealed in opened)
    checked = []
    for body, sealed in opened:
        sender = batch.peer(sealed.sender)
        if sender is None:
            dead.append(_refused(queue, body, sealed.sender, f"{sealed.sender} is not a trusted host of this cloud "
                                                             "(unknown, or its key was revoked)"))
        elif not verify_sealed(sender.public_key, queue, sealed):
            dead.append(_refused(queue, body, sealed.sender, f"wrong signature: not sealed by {sealed.sender} for "
                                                             f"{queue}"))
        else:
            try:
                checked.append((body, sender, decode(sealed.message)))
            except InvalidMessage as exc:
                dead.append(DeadLetter(body, str(exc)))
    reasons = policy.refusals(batch, [(sender, message) for _body, sender, message in checked])
    taken = []
    for (body, sender, message), reason in zip(checked, reasons, strict=True):
        if reason:
            dead.append(_refused(queue, body, sender.name, reason))
        else:
            taken.append((body, message))
    return dead, taken


def _refused(queue: str, body: bytes, sender: str, reason: str) -> DeadLetter:
    security.warning("bus: refused a message on %s from %s: %s", queue, sender or "nobody", reason)
    return DeadLetter(body, f"refused: {reason}")


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
            pending = self._queues[queue]
            pending.append(bytes(body))
            bound = max_bytes(queue)
            if bound is not None:  # as RabbitMQ's x-max-length-bytes: the oldest waiting messages go
                held = sum(map(len, pending))
                while held > bound:
                    held -= len(pending.popleft())
            self._cond.notify_all()

    def consume(self, queue: str, handler: Handler, stop: threading.Event, *,
                max_batch: int = 200, max_wait: float = 0.05, policy: Policy | None = None) -> None:
        policy = policy or _policy_for(queue)
        while not stop.is_set():
            with self._cond:
                pending = self._queues[queue]
                if not pending:
                    self._cond.wait(timeout=max_wait)
                    continue
                batch = [pending.popleft() for _ in range(min(max_batch, len(pending)))]
            try:
                dead = self.handle_batch(queue, handler, batch, policy)
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
        bound = max_bytes(queue)
        # Dropping the oldest ("drop-head", RabbitMQ's default overflow) once the queue holds more than its bound.
        channel.queue_declare(queue=queue, durable=True,
                              arguments={"x-max-length-bytes": bound} if bound is not None else None)
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
                max_batch: int = 200, max_wait: float = 0.05, policy: Policy | None = None) -> None:
        policy = policy or _policy_for(queue)
        delay = _BACKOFF_START
        while not stop.is_set():
            channel = None
            try:
                channel = self._connect()
                self._declare(channel, queue)
                channel.basic_qos(prefetch_count=max_batch * 2)
                delay = _BACKOFF_START
                self._consume_on(channel, queue, handler, stop, max_batch, max_wait, policy)
            except _RECOVERABLE as exc:
                logger.warning("bus: consumer of %s lost the broker (%r); reconnecting in %.1fs", queue, exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
            finally:
                if channel is not None:
                    _close_quietly(channel.connection)

    def _consume_on(self, channel, queue: str, handler: Handler, stop: threading.Event,
                    max_batch: int, max_wait: float, policy: Policy) -> None:
        batch: list[tuple[int, bytes]] = []
        started = 0.0
        for method, _properties, body in channel.consume(queue, inactivity_timeout=max_wait):
            if method is not None:
                if not batch:
                    started = time.monotonic()
                batch.append((method.delivery_tag, body))
            if batch and (method is None or len(batch) >= max_batch or time.monotonic() - started >= max_wait):
                if not self._flush(channel, queue, handler, batch, stop, policy):
                    return
                batch = []
            if stop.is_set():
                break
        channel.cancel()

    def _flush(self, channel, queue: str, handler: Handler, batch: list[tuple[int, bytes]],
               stop: threading.Event, policy: Policy) -> bool:
        try:
            dead = self.handle_batch(queue, handler, [body for _tag, body in batch], policy)
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

    def check(self) -> str:
        """A fresh connection and channel to the broker, closed again."""
        try:
            channel = self._connect()
        except _RECOVERABLE as exc:
            raise BusUnavailable(f"{_safe_url(self.url)}: {exc!r}") from exc
        _close_quietly(channel.connection)
        return f"RabbitMQ at {_safe_url(self.url)}"

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
