"""The console proxy: a websocket server in the CLC that relays a browser's noVNC session to a desktop's VNC console,
so that no VNC port is handed to the browser.

A browser opens ``ws://<host>:<clc.console_port>/console/<token>`` with a one-time token from the portal
(``clc.services.portal.issue_console_token``). The token is checked in the opening handshake, before the upgrade:
a bad, expired or reused token, or a person the rule no longer allows, gets an HTTP 403 and nothing is opened. An
admitted session gets a TCP connection to the console's host and port (as reachable from the CLC: the node, or the
cluster controller's public address in a private cluster). A console with a password (every run the CLC starts has
one) is logged in to by the proxy, which then greets the browser as a console asking for none (``clc.services.rfb``):
the password never reaches the browser. From then on the bytes are relayed both ways in binary frames
(noVNC's ``binary`` subprotocol when it asks for it). While it is open the desktop is marked active every
``ACTIVITY_SECONDS`` and the rule is asked again; the session ends when either side closes, when the desktop stops,
or when the person may no longer use it.

It runs in its own thread with an asyncio loop (the ``clc-console-proxy`` daemon); the database is used from worker
threads, never from the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, close_old_connections
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from clc.services import rfb
from clc.services.portal import (
    ACTIVITY_SECONDS,
    ConsoleRefused,
    ConsoleSession,
    keep_console_session,
    redeem_console_token,
    touch_activity,
)

logger = logging.getLogger(__name__)

PATH_PREFIX = "/console/"
SUBPROTOCOL = "binary"
RELAY_BYTES = 64 * 1024
CONNECT_SECONDS = 10.0
HANDSHAKE_SECONDS = 10.0
STOP_POLL_SECONDS = 0.2
LAST_MARK_TRIES = 5
LAST_MARK_PAUSE_SECONDS = 0.1


async def _in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run a database function in a worker thread, with fresh connections as a request would have."""

    def run() -> Any:
        close_old_connections()
        try:
            return function(*args)
        finally:
            close_old_connections()

    return await asyncio.to_thread(run)


def _select_subprotocol(_connection: ServerConnection, offered) -> str | None:
    # noVNC may ask for "binary"; a client that asks for nothing gets binary frames all the same.
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


class ConsoleProxy:
    """The websocket-to-VNC relay on ``host``:``port`` (port 0: any free port, for tests). ``run(stop)`` serves
    until ``stop`` is set; ``ready`` is set once it listens, and ``port`` is then the port it listens on."""

    def __init__(self, host: str, port: int, activity_seconds: float = ACTIVITY_SECONDS) -> None:
        self.host = host
        self.port = port
        self.activity_seconds = activity_seconds
        self.ready = threading.Event()
        self.open_sessions = 0
        # The session each admitted handshake opened, until its handler takes it (gone with a failed handshake).
        self._sessions: weakref.WeakKeyDictionary[ServerConnection, ConsoleSession] = weakref.WeakKeyDictionary()

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set (a Worker target). OSError when the address cannot be listened on."""
        asyncio.run(self._serve(stop))

    async def _serve(self, stop: threading.Event) -> None:
        try:
            server = await serve(self._relay, self.host, self.port, process_request=self._admit,
                                 select_subprotocol=_select_subprotocol, compression=None)
        except OSError as exc:
            raise OSError(exc.errno, f"the console proxy cannot listen on {self.host}:{self.port}: "
                                     f"{exc.strerror}; set clc.console_port") from exc
        async with server:
            self.port = server.sockets[0].getsockname()[1]
            logger.info("console proxy: listening on %s:%s", self.host, self.port)
            self.ready.set()
            while not stop.is_set():
                await asyncio.sleep(STOP_POLL_SECONDS)
        self.ready.clear()
        logger.info("console proxy: stopped")

    async def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        """The opening handshake: 404 for another path, 403 unless the token admits a session."""
        path = request.path.split("?", 1)[0]
        if not path.startswith(PATH_PREFIX) or len(path) == len(PATH_PREFIX):
            return connection.respond(404, "no such console\n")
        try:
            session = await _in_thread(redeem_console_token, path[len(PATH_PREFIX):])
        except ConsoleRefused as refused:
            logger.warning("console proxy: refused %s: %s", _peer(connection), refused)
            return connection.respond(403, f"{refused}\n")
        self._sessions[connection] = session
        return None

    async def _relay(self, websocket: ServerConnection) -> None:
        session = self._sessions.pop(websocket)
        endpoint = session.endpoint
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(endpoint.host, endpoint.port),
                                                    CONNECT_SECONDS)
        except (OSError, TimeoutError) as exc:
            logger.warning("console proxy: console of %s at %s:%s does not answer: %s", session.instance_id,
                           endpoint.host, endpoint.port, exc)
            await websocket.close(CloseCode.INTERNAL_ERROR, "the desktop's console does not answer")
            return
        # A watcher's bytes are read as RFB messages from the first, so the proxy opens the session itself.
        watcher = rfb.WatchOnly() if session.watch else None
        if endpoint.password or watcher is not None:
            try:
                await asyncio.wait_for(self._open_rfb(endpoint.password, reader, writer, websocket, watcher),
                                       HANDSHAKE_SECONDS)
            except (rfb.HandshakeError, asyncio.IncompleteReadError, TimeoutError, OSError, ConnectionClosed) as exc:
                reason = str(exc) if isinstance(exc, rfb.HandshakeError) else "the desktop's console did not answer"
                logger.warning("console proxy: opening %s's console for %s failed: %s", session.instance_id,
                               session.username, reason)
                writer.close()
                await websocket.close(CloseCode.INTERNAL_ERROR, _reason(reason))
                return
        logger.info("console proxy: %s connected to %s (%s:%s) from %s", session.username, session.instance_id,
                    endpoint.host, endpoint.port, _peer(websocket))
        self.open_sessions += 1
        tasks = [asyncio.create_task(self._to_console(websocket, writer, watcher)),
                 asyncio.create_task(self._to_browser(reader, websocket)),
                 asyncio.create_task(self._keep(session, websocket))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            writer.close()
            with contextlib.suppress(OSError):  # the console side may be gone already: nothing is left to close
                await writer.wait_closed()
            await websocket.close()
            self.open_sessions -= 1
            if not session.watch:  # a teacher watching does not keep the desktop from being idle
                await self._touch(session)
            logger.info("console proxy: %s left %s", session.username, session.instance_id)

    @staticmethod
    async def _open_rfb(password: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        websocket: ServerConnection, watcher: rfb.WatchOnly | None = None) -> None:
        """Log in to the console with the run's password, then greet the browser as a console that asks for none;
        the browser's first bytes after its greeting go on to the console (through ``watcher``, if it watches)."""

        async def to_console(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        await rfb.log_in(reader.readexactly, to_console, password)
        browser = _BrowserBytes(websocket)
        await rfb.greet(browser.read_exactly, websocket.send)
        pending = watcher.feed(browser.pending) if watcher is not None and browser.pending else browser.pending
        if pending:
            await to_console(pending)

    async def _to_console(self, websocket: ServerConnection, writer: asyncio.StreamWriter,
                          watcher: rfb.WatchOnly | None) -> None:
        try:
            async for message in websocket:
                if isinstance(message, str):
                    await websocket.close(CloseCode.UNSUPPORTED_DATA, "a console takes binary frames only")
                    return
                if watcher is not None:
                    message = watcher.feed(message)
                writer.write(message)
                await writer.drain()
        except rfb.HandshakeError as exc:
            await websocket.close(CloseCode.POLICY_VIOLATION, _reason(str(exc)))
        except (ConnectionClosed, OSError):
            return

    async def _to_browser(self, reader: asyncio.StreamReader, websocket: ServerConnection) -> None:
        try:
            while data := await reader.read(RELAY_BYTES):
                await websocket.send(data)
        except (ConnectionClosed, OSError):
            return

    async def _keep(self, session: ConsoleSession, websocket: ServerConnection) -> None:
        """Mark the desktop active now and again; end the session when the rule or the desktop says so."""
        while True:
            await asyncio.sleep(self.activity_seconds)
            try:
                await _in_thread(keep_console_session, session)
            except ConsoleRefused as refused:
                logger.info("console proxy: ending %s's session on %s: %s", session.username, session.instance_id,
                            refused)
                await websocket.close(CloseCode.POLICY_VIOLATION, _reason(str(refused)))
                return
            except DatabaseError as exc:  # the database is away for a moment: the student's session goes on
                logger.warning("console proxy: could not mark %s active: %s", session.instance_id, exc)

    async def _touch(self, session: ConsoleSession) -> None:
        """The last mark of a session: nothing comes after it, so a busy database gets a few more tries."""
        for attempt in range(1, LAST_MARK_TRIES + 1):
            try:
                await _in_thread(touch_activity, session.instance_id)
                return
            except DatabaseError as exc:
                if attempt == LAST_MARK_TRIES:
                    logger.warning("console proxy: could not mark %s active: %s", session.instance_id, exc)
                    return
                await asyncio.sleep(LAST_MARK_PAUSE_SECONDS * attempt)


class _BrowserBytes:
    """The browser's side of the stream, read a number of bytes at a time across however many binary frames."""

    def __init__(self, websocket: ServerConnection) -> None:
        self.websocket = websocket
        self.pending = b""

    async def read_exactly(self, count: int) -> bytes:
        while len(self.pending) < count:
            message = await self.websocket.recv()
            if isinstance(message, str):
                raise rfb.HandshakeError("a console takes binary frames only")
            self.pending += message
        data, self.pending = self.pending[:count], self.pending[count:]
        return data


def _reason(text: str) -> str:
    """A close reason fits in a control frame (123 bytes of UTF-8)."""
    return text.encode()[:120].decode(errors="ignore")


def _peer(connection: ServerConnection) -> str:
    address = connection.remote_address
    return str(address[0]) if address else "?"
