"""Running one host: the web server (waitress, threads) and the daemons of its roles, stopped by SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable

from django.core.management.base import CommandError

from daemons.roles import build_workers
from daemons.worker import Worker
from luhyaapi.config import Config
from luhyaapi.trust import own_key

logger = logging.getLogger(__name__)

# Socket reads of the web server: an upload's 64 MiB piece arrives in 64 of them.
RECV_BYTES = 2**20


def web_server(host: str, port: int, threads: int | None = None):
    """This host's web server (waitress, threads), not started yet: ``.run()`` serves, ``.close()`` stops.

    Tuned for image data (``docs/images.md``, "Speed"): complete files are handed to waitress's file wrapper, which
    sends them straight from the file; streamed bodies (a cluster cache relaying a file that is still arriving)
    stay in memory instead of going through a temporary file each (``outbuf_overflow``); the socket is read in
    large pieces, so an upload's body costs few calls to receive (``recv_bytes``). A body over
    ``walrus.constants.MAX_PUT_BYTES`` is refused by its headers (``daemons.waitress_channel``). ``threads``: the
    setting ``WEB_THREADS`` unless given."""
    from django.conf import settings
    from waitress.server import create_server

    from daemons.waitress_channel import RefusingChannel
    from educloud.wsgi import application
    from walrus.constants import MAX_PUT_BYTES

    # waitress refuses a body of max_request_body_size bytes or more.
    server = create_server(application, host=host, port=port, threads=threads or settings.WEB_THREADS,
                           ident="educloud", channel_timeout=120, outbuf_overflow=32 * 2**20, recv_bytes=RECV_BYTES,
                           max_request_body_size=MAX_PUT_BYTES + 1)
    server.channel_class = RefusingChannel
    return server


def _serve(config: Config) -> threading.Thread:
    server = web_server(config.listen_host, config.listen_port)
    thread = threading.Thread(target=server.run, name="web", daemon=True)
    thread.start()
    return thread


def _wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host if host != "0.0.0.0" else "127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the web server did not start listening on {host}:{port}")


def daemon_names(text: str) -> set[str]:
    """``--only``/``--without``: a comma list of daemon names."""
    return {name.strip() for name in text.split(",") if name.strip()}


def chosen(workers: list[Worker], only: set[str], without: set[str]) -> list[Worker]:
    """The daemons ``--only``/``--without`` leave to run; a name this host has no daemon of is a CommandError."""
    unknown = (only | without) - {worker.name for worker in workers}
    if unknown:
        raise CommandError(f"no daemon named {', '.join(sorted(unknown))} on this host; "
                           f"there are {', '.join(worker.name for worker in workers)}")
    return [worker for worker in workers if (not only or worker.name in only) and worker.name not in without]


def run_host(config: Config, *, serve_web: bool, log: Callable[[str], None], only: set[str] | None = None,
             without: set[str] | None = None, stop_vms: bool = False) -> None:
    """Serve and run until a signal arrives; daemons start after the web server answers (they register over it).
    ``only``/``without``: the daemons to run, or to leave out (``celery-worker`` where a ``celery -A educloud worker``
    of its own runs the node's commands). On a node, its VMs are then stopped (``stop_vms``) or left running with a
    word on how to stop them."""
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        logger.info("host: signal %s received; stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if serve_web:
        _serve(config)
        _wait_for_port(config.listen_host, config.listen_port)
        log(f"eduCloud {config.name} ({', '.join(config.roles)}) listening on http://{config.listen_host}:"
            f"{config.listen_port}/")
        log(f"this host's key: {own_key().fingerprint} (compare it before approving the host in the console)")
        if config.has_role("clc"):
            log(f"log in to the admin console at http://{config.ip}:{config.listen_port}/clc/ as the administrator "
                f"(first password: {config.data_dir / 'admin-password'})")
    workers, heartbeats = build_workers(config, stop)
    workers = chosen(workers, only or set(), without or set())
    for worker in workers:
        worker.start()
    log(f"daemons running: {', '.join(worker.name for worker in workers)}")
    while not stop.wait(1.0):
        pass
    if config.has_role("nc"):
        from nc.services.shutdown import on_exit

        on_exit(heartbeats["nc"], stop=stop_vms, log=log)
    for worker in workers:
        worker.join(timeout=10)
    log("stopped")
