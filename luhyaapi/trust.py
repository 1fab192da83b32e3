"""Which hosts this host trusts, and as what: the public key, roles and cluster of a signed call's sender.

The cloud controller is the authority: it records every host's key when the host enrols (``clc.services.enrolment``)
and plugs its records in here (``set_local_resolver``). Any other host asks the CLC (``GET peers/<name>/``), or, if it
may reach only its CC (a host of nc/sc roles only: nodes and classroom PCs), its CC (``GET /cc/api/1.0/peers/<name>/``,
which answers for the cluster's controllers only, from what the CC itself was told), and keeps the answer for
``PEER_CACHE_SECONDS``, so a revoked key stops working within that time while the CLC is reachable, and the last
answer keeps the cluster working while it is not. The CLC's own key is pinned when the host enrols (the enrolment's
answer carries it), so checking a call from the CLC never needs a call back to it.

Each host also remembers the nonces of the signed calls it accepted, for as long as a signature is good, so a call
caught on the wire cannot be sent again (``remember_nonce``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.cache import cache

from luhyaapi.keys import KEY_DIR, HostKey, host_key

logger = logging.getLogger("educloud.security")

PC = "pc"  # the role of a classroom PC's node controller in the trust records (not a server's "nc")
PEER_CACHE_SECONDS = 60
UNKNOWN_CACHE_SECONDS = 10
LAST_KNOWN_SECONDS = 7 * 24 * 3600
CLC_KEY_FILE = "clc.json"
PEERS_PATH = "/clc/api/1.0/peers/{name}/"
CC_PEERS_PATH = "/cc/api/1.0/peers/{name}/"
# Roles whose hosts may reach only their CC: a host that runs nothing else enrols through its CC and asks it who is who.
CLUSTER_ONLY_ROLES = frozenset({"nc", "sc"})


@dataclass(frozen=True)
class Peer:
    """A host this host trusts: its name, public key, the roles it may call as (server roles, or ``pc``), its
    cluster, and for a classroom PC its MAC."""

    name: str
    public_key: str
    roles: frozenset[str]
    cluster: str = ""
    mac: str = ""

    def as_json(self) -> dict:
        return {"name": self.name, "public_key": self.public_key, "roles": sorted(self.roles),
                "cluster": self.cluster, "mac": self.mac}

    @classmethod
    def from_json(cls, data: dict) -> Peer:
        return cls(name=data["name"], public_key=data["public_key"], roles=frozenset(data["roles"]),
                   cluster=data.get("cluster", ""), mac=data.get("mac", ""))


_local_resolver: Callable[[str], Peer | None] | None = None
_local_many: Callable[[set[str]], dict[str, Peer]] | None = None


def set_local_resolver(resolver: Callable[[str], Peer | None] | None,
                       many: Callable[[set[str]], dict[str, Peer]] | None = None) -> None:
    """The CLC host's own records of every host's key (``None`` to forget them): ``resolver`` for one name, ``many``
    (if given) for several at once, answering only for the trusted ones."""
    global _local_resolver, _local_many
    _local_resolver, _local_many = resolver, many


def reaches_only_its_cc(config) -> bool:
    """Whether a host runs cluster roles only (nc, sc): it enrols through its CC and asks it who other hosts are."""
    return set(config.roles) <= CLUSTER_ONLY_ROLES


def own_key() -> HostKey:
    """This host's key pair."""
    config = settings.EDUCLOUD
    return host_key(config.name, config.data_dir)


def own_peer() -> Peer:
    """This host as it trusts itself: every role it runs, and ``pc`` on a classroom PC (others know a PC's node
    controller as ``pc`` only: ``clc.services.enrolment.peer_of``)."""
    config = settings.EDUCLOUD
    roles = frozenset(config.roles) | ({PC} if config.host_mode else set())
    return Peer(config.name, own_key().public_key, roles, config.cluster, config.mac if config.host_mode else "")


def peer(name: str) -> Peer | None:
    """The trusted host called ``name``, or None (unknown, not yet approved, or revoked)."""
    if name == settings.EDUCLOUD.name:
        return own_peer()
    pinned = pinned_clc()
    if pinned is not None and pinned.name == name:
        return pinned
    if _local_resolver is not None:
        return _local_resolver(name)
    return _asked_of_the_authority(name)


def peers(names: Iterable[str]) -> dict[str, Peer | None]:
    """``peer`` of each of ``names``, all at once where that is cheaper (the CLC's records: one look-up)."""
    wanted = set(names)
    if _local_many is None:
        return {name: peer(name) for name in wanted}
    pinned = pinned_clc()
    found = {name: peer(name) for name in wanted
             if name == settings.EDUCLOUD.name or (pinned is not None and pinned.name == name)}
    rest = wanted - found.keys()
    trusted = _local_many(rest) if rest else {}
    return found | {name: trusted.get(name) for name in rest}


def public_key_of(name: str) -> str | None:
    found = peer(name)
    return found.public_key if found else None


def _clc_file() -> Path:
    return settings.EDUCLOUD.data_dir / KEY_DIR / CLC_KEY_FILE


_pinned: dict[Path, Peer | None] = {}
_pinned_lock = threading.Lock()


def pinned_clc() -> Peer | None:
    """The CLC's key as this host's enrolment gave it (None on the CLC itself, or before enrolling)."""
    path = _clc_file()
    with _pinned_lock:
        if path not in _pinned:
            _pinned[path] = Peer.from_json(json.loads(path.read_text())) if path.is_file() else None
        return _pinned[path]


def pin_clc(clc: Peer) -> None:
    """Keep the CLC's key (from the enrolment's answer) for checking its calls."""
    path = _clc_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(clc.as_json()))
    temporary.chmod(0o600)
    temporary.replace(path)
    with _pinned_lock:
        _pinned[path] = clc


def _asked_of_the_authority(name: str) -> Peer | None:
    from luhyaapi.client import RemoteError, RoleClient  # the client signs with this module's key

    fresh = _cached("get", f"trust:peer:{name}")
    if fresh is not None:
        return Peer.from_json(fresh) if fresh else None
    config = settings.EDUCLOUD
    base, path = (config.cc_url, CC_PEERS_PATH) if reaches_only_its_cc(config) else (config.clc_url, PEERS_PATH)
    try:
        answer = RoleClient(base, own_key(), timeout=5).get(path.format(name=name))
    except RemoteError as exc:
        if exc.status == 404:
            _cached("set", f"trust:peer:{name}", {}, UNKNOWN_CACHE_SECONDS)
            _cached("delete", f"trust:peer-last:{name}")
            return None
        last = _cached("get", f"trust:peer-last:{name}")
        logger.warning("trust: %s did not say who %s is (%s); %s", base, name, exc,
                       "using its last answer" if last else "refusing")
        return Peer.from_json(last) if last else None
    _cached("set", f"trust:peer:{name}", answer, PEER_CACHE_SECONDS)
    _cached("set", f"trust:peer-last:{name}", answer, LAST_KNOWN_SECONDS)
    return Peer.from_json(answer)


def _cached(operation: str, *args):
    """The host's cache, or nothing while it cannot be reached (the CLC is asked every time meanwhile)."""
    try:
        return getattr(cache, operation)(*args)
    except Exception as exc:  # any cache backend's failure: memcached's are socket and protocol errors
        logger.warning("trust: the cache cannot be reached (%s)", exc)
        return None


_local_nonces: dict[str, float] = {}
_local_lock = threading.Lock()
LOCAL_NONCES_MAX = 100_000


def remember_nonce(sender: str, nonce: str, seconds: float) -> bool:
    """Record a signed call's nonce; False if it was seen within ``seconds`` (a replayed call). In the host's cache,
    which its web workers share (memcached in production); while that cannot be reached, in this process's memory,
    so a call is still taken once by this worker and a cache outage is not an outage of every signed call."""
    key = f"trust:nonce:{sender}:{nonce}"
    added = _cached("add", key, 1, int(seconds) + 1)
    if added is not None:
        return added
    now = time.monotonic()
    with _local_lock:
        if len(_local_nonces) >= LOCAL_NONCES_MAX:
            for old in [name for name, until in _local_nonces.items() if until < now]:
                del _local_nonces[old]
        if _local_nonces.get(key, 0) > now:
            return False
        _local_nonces[key] = now + seconds
        return True


def forget_pinned() -> None:
    """For tests that change the data directory: read the pinned CLC key from disk again."""
    with _pinned_lock:
        _pinned.clear()


def registration_refusal(who, *, role: str, name: str, cluster: str, classroom_pc: bool) -> str:
    """Why the signed host ``who`` (its ``name``, ``roles`` and ``cluster``) may not register the server ``name``
    as ``role`` ("" if it may): a host registers itself only, as a role it was enrolled with, in its own cluster;
    a classroom PC only as a PC's node controller."""
    if who.name != name:
        return f"{who.name} may register only itself, not {name}"
    if who.cluster != cluster:
        return f"{who.name} was enrolled in cluster {who.cluster}, not {cluster}"
    if classroom_pc and (PC not in who.roles or role != "nc"):
        return f"{who.name} was enrolled as {', '.join(sorted(who.roles))}, not as a PC"
    if not classroom_pc and role not in who.roles:
        return f"{who.name} was enrolled as {', '.join(sorted(who.roles))}, not as {role}"
    return ""
