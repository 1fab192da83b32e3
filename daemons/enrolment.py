"""This host's enrolment: before any role registers, the host has its key trusted by the cloud controller.

Every host but the CLC's (the authority) sends its public key at every start (``EnrolmentRequest``) to its boss: the
CC for a node or a classroom PC (which may reach only its CC), the CLC for other servers. With ``host.join_token``
the key is trusted at once; otherwise the host waits, asking again now and then, until an administrator approves
the fingerprint it logs. The answer carries the CLC's key, kept for checking the CLC's calls
(``luhyaapi.trust.pin_clc``).
"""

from __future__ import annotations

import logging
import threading

from luhyaapi import trust
from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.config import Config
from luhyaapi.messages import EnrolmentRequest

logger = logging.getLogger(__name__)

RETRY_SECONDS = (1.0, 60.0)

_enrolled = threading.Event()
_lock = threading.Lock()


def enrolment_request(config: Config) -> EnrolmentRequest:
    return EnrolmentRequest(name=config.name, kind="pc" if config.host_mode else "server", roles=list(config.roles),
                            cluster=config.cluster, mac=config.mac, public_key=trust.own_key().public_key,
                            join_token=config.join_token)


def enrolment_target(config: Config) -> tuple[str, str]:
    """Where the host enrols (base URL, path): with its CC if it runs only cluster roles, else with the CLC."""
    if trust.reaches_only_its_cc(config):
        return config.cc_url, "/cc/api/1.0/enrolments/"
    return config.clc_url, "/clc/api/1.0/enrolments/"


def wait_until_enrolled(config: Config, stop: threading.Event) -> bool:
    """Block until this host's key is trusted (at once on the CLC host); False if ``stop`` came first. Threads of
    several roles may call it: one of them asks, the others wait for its answer."""
    if config.has_role("clc") or _enrolled.is_set():
        return True
    with _lock:
        while not _enrolled.is_set() and not stop.is_set():
            delay = RETRY_SECONDS[0]
            told_pending = False
            while not stop.is_set():
                state = _ask(config, told_pending)
                if state == "active":
                    _enrolled.set()
                    break
                told_pending = told_pending or state == "pending"
                stop.wait(delay)
                delay = min(delay * 2, RETRY_SECONDS[1])
    return _enrolled.is_set()


def _ask(config: Config, told_pending: bool) -> str:
    """Send the enrolment once; the key's state, or "" when the boss could not answer."""
    base, path = enrolment_target(config)
    key = trust.own_key()
    try:
        # Unsigned: nobody trusts the key yet (a signature by an unknown key is refused before the endpoint).
        answer = RoleClient(base, None, timeout=10).post(path, enrolment_request(config).model_dump(mode="json"))
    except RemoteError as exc:
        logger.warning("enrolment: %s%s did not take this host's key (%s); asking again", base, path, exc)
        return ""
    if answer.get("state") == "active":
        trust.pin_clc(trust.Peer.from_json(answer["clc"]))
        logger.info("enrolment: this host's key %s is trusted", key.fingerprint)
        return "active"
    if not told_pending:
        logger.warning("enrolment: this host's key %s waits for approval: an administrator approves it in the "
                       "console (Servers or Hosts, Keys), or give the host a join token (host.join_token)",
                       key.fingerprint)
    return answer.get("state", "")
