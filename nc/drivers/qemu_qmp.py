"""A small client of QEMU's machine protocol (QMP) on a VM's unix socket: one short connection per use."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class QMPError(RuntimeError):
    """The VM's QMP socket did not answer, closed early, or QEMU refused the command (its message is the text)."""


class QMPTimeout(QMPError):
    """QEMU said nothing within the connection's timeout."""


class QMPClient:
    """A connection to one VM's QMP socket, ready for commands after ``__enter__`` (greeting and capabilities read).

    QEMU serves one QMP client at a time on a socket, so connections are kept short: ``with QMPClient(path) as qmp:``.
    Events QEMU sends between replies are kept for ``wait_event`` (and otherwise ignored).
    """

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> QMPClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            raise QMPError(f"cannot connect to QMP socket {self.path}: {exc}") from None
        self._sock = sock
        self._reader = sock.makefile("rb")
        try:
            greeting = self._read_message()
            if "QMP" not in greeting:
                raise QMPError(f"{self.path} is not a QMP socket (greeting {greeting!r})")
            self.execute("qmp_capabilities")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (QEMU then accepts the next client)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run ``command`` and return QEMU's ``return`` value; QMPError with QEMU's description if it refuses."""
        if self._sock is None:
            raise QMPError("QMP connection is not open")
        self._next_id += 1
        request: dict[str, Any] = {"execute": command, "id": self._next_id}
        if arguments:
            request["arguments"] = arguments
        try:
            self._sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            raise QMPError(f"QMP {command} on {self.path}: {exc}") from None
        while True:
            message = self._read_message()
            if "event" in message:
                self._events.append(message)
                continue
            if message.get("id") != self._next_id:
                continue
            if "error" in message:
                error = message["error"]
                raise QMPError(f"QMP {command}: {error.get('class', 'Error')}: {error.get('desc', '')}")
            return message.get("return")

    def wait_event(self, name: str, match: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        """The first event ``name`` whose ``data`` ``match`` accepts, among those that came since this connection
        opened and those coming within ``timeout`` seconds; None if none came. After None the connection is closed
        (a read cut short by its timeout leaves the stream in an unknown place)."""
        if self._sock is None:
            raise QMPError("QMP connection is not open")
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self._events):
                if event.get("event") == name and match(event.get("data") or {}):
                    return self._events.pop(index)
            self._events.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                return None
            self._sock.settimeout(remaining)
            try:
                message = self._read_message()
            except QMPTimeout:
                self.close()
                return None
            finally:
                if self._sock is not None:
                    self._sock.settimeout(self.timeout)
            if "event" in message:
                self._events.append(message)

    def _read_message(self) -> dict[str, Any]:
        try:
            line = self._reader.readline()
        except TimeoutError:
            raise QMPTimeout(f"no answer on QMP socket {self.path} within {self._sock.gettimeout()} s") from None
        except OSError as exc:
            raise QMPError(f"no answer on QMP socket {self.path}: {exc}") from None
        if not line:
            raise QMPError(f"QMP socket {self.path} closed")
        try:
            message = json.loads(line)
        except ValueError:
            raise QMPError(f"QMP socket {self.path} sent something that is not JSON: {line[:200]!r}") from None
        if not isinstance(message, dict):
            raise QMPError(f"QMP socket {self.path} sent {message!r}")
        return message
