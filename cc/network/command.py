"""Running the network tools (iptables, ip, dnsmasq) as argv lists, on the host or inside a network namespace."""

from __future__ import annotations

import logging
import subprocess

from cc.network import validate

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30


class CommandFailed(RuntimeError):
    """A network tool exited with an error; ``argv``, ``returncode`` and ``stderr`` say which and why."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} exited with {returncode}: {stderr.strip()}")
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


def in_netns(argv: list[str], netns: str | None) -> list[str]:
    """``argv`` as run inside network namespace ``netns`` (unchanged for None, the host's own stack)."""
    name = validate.netns(netns)
    return argv if name is None else ["ip", "netns", "exec", name, *argv]


def run(argv: list[str], *, netns: str | None = None, stdin: str | None = None, check: bool = True,
        timeout: float = DEFAULT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (never through a shell) and return its completed process with text output. Raises
    CommandFailed on a non-zero exit when ``check``, and subprocess.TimeoutExpired after ``timeout`` seconds."""
    full = in_netns(argv, netns)
    logger.debug("running %s", full)
    result = subprocess.run(full, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise CommandFailed(full, result.returncode, result.stderr)
    return result
