"""A kombu transport on a SQLite file: the embedded default's broker for Celery, which needs no server and loses
nothing on a kill -9.

URL: ``sqlite-broker:///<path>`` (``luhyaapi.config.celery_broker_url`` makes it ``<data_dir>/broker.sqlite3``).

Why our own, not kombu's SQLAlchemy transport: that one hides a message when a worker fetches it and forgets it only
in memory on the ack, so a message fetched but not yet acknowledged when the process dies (a task under way, with
``acks_late``) is never delivered again. Here a fetched message is *leased*: its row stays, with the time its lease
ends, and the consumer renews the leases it holds at every poll while it lives. The ack deletes the row; a reject
with requeue, or a clean shutdown, ends the lease at once; a process killed with SIGKILL stops renewing, so its
messages become visible again ``lease_seconds`` later and go to the next consumer, marked redelivered.

Routing is kept in the file too (exchanges and bindings), so a task sent by one process of the host reaches a worker
in another, and Celery's broadcast (``celery inspect``, remote control) works: fanout exchanges copy a message to
every queue bound to them. A message with an AMQP ``expiration`` (Celery's replies) is dropped when it expires.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
import uuid
from queue import Empty

import kombu.transport
from kombu.transport import virtual

LEASE_SECONDS = 20.0
POLL_SECONDS = 0.05

_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    tag TEXT NOT NULL,
    payload TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    expires_at REAL,
    leased_by TEXT,
    lease_until REAL,
    deliveries INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS message_ready ON message (queue, lease_until, priority, id);
CREATE INDEX IF NOT EXISTS message_tag ON message (tag);
CREATE INDEX IF NOT EXISTS message_lease ON message (leased_by);
CREATE TABLE IF NOT EXISTS binding (
    exchange TEXT NOT NULL,
    type TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    queue TEXT NOT NULL,
    PRIMARY KEY (exchange, routing_key, queue)
);
"""


class Store:
    """The file's tables, one connection per thread (SQLite connections are not shared between threads)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with self.connection() as db:
            db.executescript(_SCHEMA)
        os.chmod(path, 0o600)

    def connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            # autocommit mode: every change below is one statement or an explicit BEGIN IMMEDIATE ... COMMIT.
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def put(self, queue: str, message: dict) -> None:
        # Every stored copy has a tag of its own (a fanout stores one message several times), which its ack names.
        properties = dict(message.get("properties") or {}, delivery_tag=uuid.uuid4().hex)
        expiration = properties.get("expiration")
        expires_at = time.time() + float(expiration) / 1000 if expiration not in (None, "") else None
        self.connection().execute(
            "INSERT INTO message (queue, tag, payload, priority, expires_at) VALUES (?, ?, ?, ?, ?)",
            (queue, properties["delivery_tag"], json.dumps(dict(message, properties=properties)),
             int(properties.get("priority") or 0), expires_at))

    def lease(self, queue: str, owner: str, seconds: float) -> dict | None:
        """The oldest visible message of ``queue`` (highest priority first), under a lease for ``owner``."""
        return self._next(queue, owner, seconds)

    def take(self, queue: str) -> dict | None:
        """The oldest visible message of ``queue``, removed from the file: for a consumer that acks nothing."""
        return self._next(queue, None, 0)

    def _next(self, queue: str, owner: str | None, seconds: float) -> dict | None:
        db = self.connection()
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM message WHERE queue = ? AND expires_at IS NOT NULL AND expires_at < ?",
                       (queue, now))
            row = db.execute(
                "SELECT id, payload, deliveries FROM message WHERE queue = ? AND (lease_until IS NULL OR "
                "lease_until < ?) ORDER BY priority DESC, id LIMIT 1", (queue, now)).fetchone()
            if row is None:
                db.execute("COMMIT")
                return None
            if owner is None:
                db.execute("DELETE FROM message WHERE id = ?", (row[0],))
            else:
                db.execute("UPDATE message SET leased_by = ?, lease_until = ?, deliveries = deliveries + 1 "
                           "WHERE id = ?", (owner, now + seconds, row[0]))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        message = json.loads(row[1])
        if row[2]:  # as AMQP marks it, so Celery (and the tests) can tell a second delivery
            message.setdefault("properties", {}).setdefault("delivery_info", {})["redelivered"] = True
        return message

    def renew(self, owner: str, seconds: float) -> None:
        self.connection().execute("UPDATE message SET lease_until = ? WHERE leased_by = ? AND lease_until IS NOT NULL",
                                  (time.time() + seconds, owner))

    def forget(self, tag: str) -> None:
        self.connection().execute("DELETE FROM message WHERE tag = ?", (tag,))

    def release(self, tags: list[str]) -> None:
        db = self.connection()
        db.executemany("UPDATE message SET leased_by = NULL, lease_until = NULL WHERE tag = ?",
                       [(tag,) for tag in tags])

    def size(self, queue: str) -> int:
        return self.connection().execute(
            "SELECT count(*) FROM message WHERE queue = ? AND (lease_until IS NULL OR lease_until < ?)",
            (queue, time.time())).fetchone()[0]

    def purge(self, queue: str) -> int:
        return self.connection().execute(
            "DELETE FROM message WHERE queue = ? AND lease_until IS NULL", (queue,)).rowcount

    def delete_queue(self, queue: str) -> None:
        db = self.connection()
        db.execute("DELETE FROM message WHERE queue = ?", (queue,))
        db.execute("DELETE FROM binding WHERE queue = ?", (queue,))

    def bind(self, exchange: str, kind: str, routing_key: str, queue: str) -> None:
        self.connection().execute("INSERT OR REPLACE INTO binding VALUES (?, ?, ?, ?)",
                                  (exchange, kind, routing_key, queue))

    def unbind(self, exchange: str, routing_key: str, queue: str) -> None:
        self.connection().execute("DELETE FROM binding WHERE exchange = ? AND routing_key = ? AND queue = ?",
                                  (exchange, routing_key, queue))

    def bound(self, exchange: str, routing_key: str) -> list[str]:
        """The queues a message to ``exchange`` with ``routing_key`` goes to: every one bound to a fanout, those bound
        with that key to a direct exchange, those whose pattern matches it on a topic exchange (Celery's events)."""
        rows = self.connection().execute("SELECT type, routing_key, queue FROM binding WHERE exchange = ?",
                                         (exchange,)).fetchall()
        return [queue for kind, pattern, queue in rows
                if kind == "fanout" or pattern == routing_key or (kind == "topic" and topic_matches(pattern,
                                                                                                   routing_key))]

    def exchange_type(self, exchange: str) -> str | None:
        row = self.connection().execute("SELECT type FROM binding WHERE exchange = ? LIMIT 1", (exchange,)).fetchone()
        return row[0] if row else None


@functools.lru_cache(maxsize=256)
def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether a topic binding's ``pattern`` takes a message with ``routing_key``: AMQP topics are words between
    dots, where '*' is exactly one word and '#' zero or more."""
    return _words_match(tuple(pattern.split(".")), tuple(routing_key.split(".")))


def _words_match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    first, rest = pattern[0], pattern[1:]
    if first == "#":
        return any(_words_match(rest, words[skipped:]) for skipped in range(len(words) + 1))
    return bool(words) and first in ("*", words[0]) and _words_match(rest, words[1:])


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def store_at(path: str) -> Store:
    with _stores_lock:
        if path not in _stores:
            _stores[path] = Store(path)
        return _stores[path]


def empty(url: str) -> None:
    """Drop every message of the broker file a ``sqlite-broker://`` URL names (its bindings stay)."""
    store_at("/" + url.removeprefix("sqlite-broker://").lstrip("/")).connection().execute("DELETE FROM message")


class QoS(virtual.QoS):
    """Acks and rejects act on the file: an acked message is deleted there, a requeued one leased no more."""

    def ack(self, delivery_tag):
        self.channel.store.forget(delivery_tag)
        super().ack(delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        if requeue:
            self.channel.store.release([delivery_tag])
        else:
            self.channel.store.forget(delivery_tag)
        self._quick_ack(delivery_tag)

    def restore_unacked(self):
        # A clean shutdown or a recover: what this channel holds goes back at once, in its place in the queue.
        self._flush()
        tags = list(self._delivered)
        self._delivered.clear()
        if tags:
            self.channel.store.release(tags)
        return []


class Channel(virtual.Channel):
    QoS = QoS
    do_restore = True
    supports_fanout = True

    def __init__(self, connection, **kwargs):
        super().__init__(connection, **kwargs)
        options = connection.client.transport_options
        self.lease_seconds = float(options.get("lease_seconds", LEASE_SECONDS))
        self.store = store_at("/" + (connection.client.virtual_host or "").lstrip("/"))
        self.owner = f"{os.getpid()}:{uuid.uuid4().hex}"
        self._renewed = time.monotonic()
        # Queues consumed without acks (Celery's broadcasts and replies): no ack would end a lease, so the message
        # would come back to them when it ran out; they take their messages out of the file instead.
        self._no_ack_queues: set[str] = set()

    def basic_consume(self, queue, no_ack, callback, consumer_tag, **kwargs):
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def basic_cancel(self, consumer_tag):
        self._no_ack_queues.discard(self._tag_to_queue.get(consumer_tag))
        return super().basic_cancel(consumer_tag)

    def basic_get(self, queue, no_ack=False, **kwargs):
        if not no_ack:
            return super().basic_get(queue, no_ack=False, **kwargs)
        message = self.store.take(queue)
        return None if message is None else self.Message(message, channel=self)

    def _put(self, queue, message, **kwargs):
        self.store.put(queue, message)

    def _get(self, queue, timeout=None):
        if queue in self._no_ack_queues:
            message = self.store.take(queue)
        else:
            message = self.store.lease(queue, self.owner, self.lease_seconds)
        if message is None:
            raise Empty()
        return message

    def drain_events(self, timeout=None, callback=None):
        # Every poll, also while every slot is busy and nothing is fetched: the leases of running tasks stay alive.
        if time.monotonic() - self._renewed >= self.lease_seconds / 4:
            self.store.renew(self.owner, self.lease_seconds)
            self._renewed = time.monotonic()
        return super().drain_events(timeout=timeout, callback=callback)

    def _size(self, queue):
        return self.store.size(queue)

    def _purge(self, queue):
        return self.store.purge(queue)

    def _delete(self, queue, *args, **kwargs):
        self.store.delete_queue(queue)

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        self.store.bind(exchange, self.state.exchanges.get(exchange, {}).get("type", "direct"), routing_key or "",
                        queue)

    def queue_unbind(self, queue, exchange=None, routing_key="", arguments=None, **kwargs):
        self.store.unbind(exchange or "amq.direct", routing_key or "", queue)
        return super().queue_unbind(queue, exchange, routing_key, arguments, **kwargs)

    def _lookup(self, exchange, routing_key, default=None):
        # The file's bindings, so a message finds queues another process declared; in-memory ones as kombu keeps.
        if exchange:
            queues = self.store.bound(exchange, routing_key or "")
            if queues:
                return sorted(set(queues))
        return super()._lookup(exchange, routing_key, default)

    def typeof(self, exchange, default="direct"):
        if exchange not in self.state.exchanges:
            default = self.store.exchange_type(exchange) or default
        return super().typeof(exchange, default)

    def _put_fanout(self, exchange, message, routing_key, **kwargs):
        for queue in self.store.bound(exchange, routing_key or ""):
            self.store.put(queue, message)

    def basic_publish(self, message, exchange, routing_key, **kwargs):
        # A fanout exchange declared by another process only: route it through the file's bindings.
        if exchange and exchange not in self.state.exchanges and self.store.exchange_type(exchange) == "fanout":
            self._inplace_augment_message(message, exchange, routing_key)
            return self._put_fanout(exchange, message, routing_key)
        return super().basic_publish(message, exchange, routing_key, **kwargs)


class Transport(virtual.Transport):
    Channel = Channel
    polling_interval = POLL_SECONDS
    default_port = 0
    driver_type = "sqlite"
    driver_name = "sqlite3"
    implements = virtual.Transport.implements.extend(
        asynchronous=False, exchange_type=frozenset(["direct", "topic", "fanout"]))

    def driver_version(self):
        return sqlite3.sqlite_version


# Importing this module is what makes ``sqlite-broker://`` a URL kombu (and so Celery) understands.
kombu.transport.TRANSPORT_ALIASES.setdefault("sqlite-broker", "luhyaapi.sqlite_broker:Transport")
