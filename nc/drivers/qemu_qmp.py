"""A small client of QEMU's machine protocol (QMP) on a VM's unix socket: one short connection per use."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


class QMPError(RuntimeError):
    """The VM's QMP socket did not answer, closed early, or QEMU refused the command (its message is the text)."""


class QMPClient:
    """A connection to one VM's QMP socket, ready for commands after ``__enter__`` (greeting and capabilities read).

    QEMU serves one QMP client at a time on a socket, so connections are kept short: ``with QMPClient(path) as qmp:``.
    Events QEMU sends between replies are skipped.
    """

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self._next_id = 0

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
                continue
            if message.get("id") != self._next_id:
                continue
            if "error" in message:
                error = message["error"]
                raise QMPError(f"QMP {command}: {error.get('class', 'Error')}: {error.get('desc', '')}")
            return message.get("return")

    def _read_message(self) -> dict[str, Any]:
        try:
            line = self._reader.readline()
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
