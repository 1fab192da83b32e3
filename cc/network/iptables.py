"""eduCloud's own iptables chains on the cluster controller: port forwards (cc_eip:port -> nc_ip:port) and elastic IPs
(vm_eip <-> lan_ip), applied as one desired set.

Only three chains are ours: nat ``EDUCLOUD-PRE`` (jumped to from PREROUTING and OUTPUT), nat ``EDUCLOUD-POST`` (from
POSTROUTING) and filter ``EDUCLOUD-FWD`` (from FORWARD). ``apply`` rewrites their contents with iptables-restore
--noflush: declaring a chain there creates it or empties it, and leaves every other chain and rule as it was. Each
table's part is its own transaction, nat then filter (a failing line leaves its table unchanged; a nat part already
committed stays, and the next apply corrects it). The jumps are inserted at the top of the built-in chains, once
each. Works with the nf_tables and the legacy backends, on the host or inside a network namespace.

The FORWARD accepts cover our own connections only (no blanket ESTABLISHED accept), so the host's firewall keeps
deciding for everything else; the host must forward IPv4 (net.ipv4.ip_forward=1, set by the deployment).
Forwarded traffic keeps its source address: a node behind a port forward, and a VM behind an elastic IP, see the
student's address, so their replies must route back through the cluster controller (the cluster LAN's gateway, as
the DHCP server announces it). A VM's own outgoing connections leave with its elastic IP as source.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import re
import shlex
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cc.network import command, validate

logger = logging.getLogger(__name__)

IPTABLES = "iptables"
IPTABLES_RESTORE = "iptables-restore"
LOCK_DIR = Path("/run/lock")

PRE = "EDUCLOUD-PRE"
POST = "EDUCLOUD-POST"
FWD = "EDUCLOUD-FWD"
CHAINS: dict[str, tuple[str, ...]] = {"nat": (PRE, POST), "filter": (FWD,)}
# (table, built-in chain, our chain): OUTPUT too, so the cluster controller itself reaches forwarded addresses.
JUMPS: tuple[tuple[str, str, str], ...] = (
    ("nat", "PREROUTING", PRE),
    ("nat", "OUTPUT", PRE),
    ("nat", "POSTROUTING", POST),
    ("filter", "FORWARD", FWD),
)


class RuleConflict(ValueError):
    """Two rules of one set claim the same public address or port (or one VM two elastic IPs)."""


@dataclass(frozen=True)
class PortForward:
    """``public_ip:public_port`` on the cluster controller forwarded to ``target_ip:target_port`` (a node's console
    or service port): a DNAT, and FORWARD accepts for the forwarded connection both ways."""

    public_ip: str
    public_port: int
    target_ip: str
    target_port: int
    protocol: str = "tcp"

    def __post_init__(self) -> None:
        _normalise(self, public_ip=validate.ipv4(self.public_ip, "public_ip"),
                   public_port=validate.port(self.public_port, "public_port"),
                   target_ip=validate.ipv4(self.target_ip, "target_ip"),
                   target_port=validate.port(self.target_port, "target_port"),
                   protocol=validate.protocol(self.protocol))

    def specs(self) -> Iterator[tuple[str, str]]:
        proto = f"-p {self.protocol} -m {self.protocol}"
        yield PRE, (f"-d {self.public_ip}/32 {proto} --dport {self.public_port} "
                    f"-j DNAT --to-destination {self.target_ip}:{self.target_port}")
        yield FWD, f"-d {self.target_ip}/32 {proto} --dport {self.target_port} -m conntrack --ctstate DNAT -j ACCEPT"
        yield FWD, f"-s {self.target_ip}/32 {proto} --sport {self.target_port} -m conntrack --ctstate DNAT -j ACCEPT"


@dataclass(frozen=True)
class ElasticIp:
    """All traffic to ``eip`` goes to ``lan_ip`` (a VM on the cluster LAN), and the VM's own connections leave from
    ``eip``: a DNAT, a SNAT and FORWARD accepts. The address itself is aliased on the public interface by
    cc.network.addresses.ensure_alias."""

    eip: str
    lan_ip: str

    def __post_init__(self) -> None:
        _normalise(self, eip=validate.ipv4(self.eip, "eip"), lan_ip=validate.ipv4(self.lan_ip, "lan_ip"))

    def specs(self) -> Iterator[tuple[str, str]]:
        yield PRE, f"-d {self.eip}/32 -j DNAT --to-destination {self.lan_ip}"
        yield POST, f"-s {self.lan_ip}/32 -j SNAT --to-source {self.eip}"
        yield FWD, f"-d {self.lan_ip}/32 -m conntrack --ctstate DNAT -j ACCEPT"
        yield FWD, f"-d {self.lan_ip}/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        yield FWD, f"-s {self.lan_ip}/32 -j ACCEPT"


Rule = PortForward | ElasticIp

_PORT_FORWARD_RE = re.compile(
    r"^-d (?P<public_ip>[0-9.]+)/32 -p (?P<protocol>tcp|udp) -m (?P=protocol) --dport (?P<public_port>[0-9]+) "
    r"-j DNAT --to-destination (?P<target_ip>[0-9.]+):(?P<target_port>[0-9]+)$")
_ELASTIC_IP_RE = re.compile(r"^-d (?P<eip>[0-9.]+)/32 -j DNAT --to-destination (?P<lan_ip>[0-9.]+)$")


def _normalise(rule: object, **fields: object) -> None:
    for name, value in fields.items():
        object.__setattr__(rule, name, value)


def apply(rules: Iterable[Rule], *, netns: str | None = None) -> None:
    """Make our chains hold exactly ``rules`` (and the jumps to them exist once each), whatever they held before;
    rules outside our chains are never changed. Applying the same set again changes nothing, and the order of
    ``rules`` does not matter. Raises TypeError for a value that is not a rule, RuleConflict for clashing rules
    (both before any command runs), and command.CommandFailed if iptables refuses."""
    netns = validate.netns(netns)
    wanted = _checked(rules)
    rendered = _render(wanted)
    with _lock(netns):
        tables = {table: _read_table(table, netns) for table in CHAINS}
        restore = []
        for table, chains in CHAINS.items():
            restore += [f"*{table}", *(f":{chain} - [0:0]" for chain in chains)]
            restore += [f"-A {chain} {spec}" for chain in chains for spec in rendered[chain]]
            restore += _fix_jumps(table, tables[table])
            restore.append("COMMIT")
        command.run([IPTABLES_RESTORE, "-w", "--noflush"], stdin="\n".join(restore) + "\n", netns=netns)
    logger.info("iptables: applied %d rules%s", len(wanted), f" in netns {netns}" if netns else "")


def remove_all(*, netns: str | None = None) -> None:
    """Remove the jumps to our chains and the chains themselves; nothing else. Does nothing if they are gone.
    Raises command.CommandFailed if iptables refuses."""
    netns = validate.netns(netns)
    with _lock(netns):
        restore = []
        for table, chains in CHAINS.items():
            state = _read_table(table, netns)
            present = [chain for chain in chains if chain in state.chains]
            jumps = [(chain, spec) for chain, spec in state.rules if chain not in chains and _target(spec) in chains]
            if not present and not jumps:
                continue
            restore += [f"*{table}", *(f"-D {chain} {spec}" for chain, spec in jumps)]
            restore += [f":{chain} - [0:0]" for chain in present] + [f"-X {chain}" for chain in present]
            restore.append("COMMIT")
        if restore:
            command.run([IPTABLES_RESTORE, "-w", "--noflush"], stdin="\n".join(restore) + "\n", netns=netns)
    logger.info("iptables: removed eduCloud's chains%s", f" in netns {netns}" if netns else "")


def current(*, netns: str | None = None) -> frozenset[Rule] | None:
    """The rules our chains hold, read back from iptables; None when they do not hold exactly what ``apply`` of some
    rule set leaves (a chain or jump missing or doubled, a line edited by hand), so a restarted cluster controller
    can compare this with its records and re-apply when they differ."""
    netns = validate.netns(netns)
    tables = {table: _read_table(table, netns) for table in CHAINS}
    for table, builtin, chain in JUMPS:
        if chain not in tables[table].chains or tables[table].rules.count((builtin, f"-j {chain}")) != 1:
            return None
    actual = {chain: tables[table].specs(chain) for table, chains in CHAINS.items() for chain in chains}
    rules = [_parse(spec) for spec in actual[PRE]]
    if None in rules:
        return None
    try:
        wanted = _checked(rules)
    except ValueError:
        return None
    return frozenset(wanted) if _render(wanted) == actual else None


def _checked(rules: Iterable[Rule]) -> list[Rule]:
    """The distinct rules in a fixed order; TypeError or RuleConflict before anything reaches iptables."""
    distinct = set()
    for rule in rules:
        if not isinstance(rule, PortForward | ElasticIp):
            raise TypeError(f"{rule!r} is not a PortForward or an ElasticIp")
        distinct.add(rule)
    ordered = sorted(distinct, key=lambda rule: (type(rule).__name__, dataclasses.astuple(rule)))
    ports: dict[tuple[str, str, int], Rule] = {}
    forwarded: dict[str, Rule] = {}
    eips: dict[str, Rule] = {}
    lans: dict[str, Rule] = {}
    for rule in ordered:
        if isinstance(rule, PortForward):
            # An elastic IP takes every port of its address, so no port forward may use that address.
            clash = ports.get((rule.public_ip, rule.protocol, rule.public_port)) or eips.get(rule.public_ip)
            ports[(rule.public_ip, rule.protocol, rule.public_port)] = forwarded[rule.public_ip] = rule
        else:
            clash = eips.get(rule.eip) or forwarded.get(rule.eip) or lans.get(rule.lan_ip)
            eips[rule.eip] = lans[rule.lan_ip] = rule
        if clash is not None:
            raise RuleConflict(f"{rule} clashes with {clash}")
    return ordered


def _render(rules: list[Rule]) -> dict[str, list[str]]:
    """Each of our chains' rule specs (as ``iptables -S`` prints them, without ``-A CHAIN``) for ``rules``."""
    rendered: dict[str, list[str]] = {chain: [] for chains in CHAINS.values() for chain in chains}
    for rule in rules:
        for chain, spec in rule.specs():
            # Two forwards to one target port share their FORWARD accepts.
            if spec not in rendered[chain]:
                rendered[chain].append(spec)
    return rendered


def _parse(spec: str) -> Rule | None:
    try:
        if match := _PORT_FORWARD_RE.fullmatch(spec):
            return PortForward(match["public_ip"], int(match["public_port"]), match["target_ip"],
                               int(match["target_port"]), match["protocol"])
        if match := _ELASTIC_IP_RE.fullmatch(spec):
            return ElasticIp(match["eip"], match["lan_ip"])
    except ValueError:
        return None
    return None


@dataclass
class _Table:
    """One table as ``iptables -S`` lists it: its user chains and its rules as (chain, spec) in order."""

    chains: set[str]
    rules: list[tuple[str, str]]

    def specs(self, chain: str) -> list[str]:
        return [spec for owner, spec in self.rules if owner == chain]


def _read_table(table: str, netns: str | None) -> _Table:
    listing = command.run([IPTABLES, "-w", "-t", table, "-S"], netns=netns).stdout
    chains, rules = set(), []
    for line in listing.splitlines():
        verb, _, rest = line.partition(" ")
        if verb == "-N":
            chains.add(rest)
        elif verb == "-A":
            chain, _, spec = rest.partition(" ")
            rules.append((chain, spec))
    return _Table(chains, rules)


def _target(spec: str) -> str | None:
    """The chain a rule jumps or goes to, if any."""
    try:
        tokens = shlex.split(spec)
    except ValueError:
        tokens = spec.split()
    for flag in ("-j", "-g"):
        if flag in tokens[:-1]:
            return tokens[tokens.index(flag) + 1]
    return None


def _fix_jumps(table: str, state: _Table) -> list[str]:
    """Restore lines that leave exactly one plain jump from each built-in chain to ours, at the top if missing."""
    lines = []
    for jump_table, builtin, chain in JUMPS:
        if jump_table != table:
            continue
        count = state.rules.count((builtin, f"-j {chain}"))
        if count == 0:
            lines.append(f"-I {builtin} 1 -j {chain}")
        lines += [f"-D {builtin} -j {chain}"] * max(count - 1, 0)
    return lines


@contextmanager
def _lock(netns: str | None) -> Iterator[None]:
    """One apply or remove at a time per network stack, across processes (reading the jumps and writing them back
    must not interleave, or two writers could both add the missing jump)."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    path = LOCK_DIR / (f"educloud-iptables-{netns}.lock" if netns else "educloud-iptables.lock")
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
