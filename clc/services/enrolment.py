"""Enrolment of hosts: which public key the cloud trusts for each server and classroom PC, and as what.

A host makes its own key pair on first start and asks to be enrolled (``enrol``): with a join token it is trusted at
once, otherwise its key waits until an administrator approves it (``approve``), having compared its fingerprint with
the one the host prints. An active key can be revoked (``revoke``): the host's calls are refused from then on (at
once here, within ``luhyaapi.trust.PEER_CACHE_SECONDS`` on the other roles), and it must enrol again. The CLC host
itself is the authority and never enrols; its key is ``luhyaapi.trust.own_peer``.

Who may approve or revoke: a server's key is the whole cloud's (the root's administrators, like servers); a PC's key
belongs with the PC's record (whoever may create PCs in its owner-group; the root for a PC not yet recorded). The
same goes for issuing join tokens. ``clc.services.authz`` decides; this module asks it.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone

from clc.services import authz
from luhyaapi.keys import fingerprint
from luhyaapi.messages import EnrolmentRequest
from luhyaapi.trust import PC, Peer
from luhyaapi.validators import InvalidValue, validate_display_name, validate_name
from luhyadb.choices import HostKindChoices as Kind
from luhyadb.choices import KeyStateChoices as State
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import Account, Host, HostCredential, JoinToken, OwnerGroup

logger = logging.getLogger("educloud.security")

# Unapproved enrolments kept at once: enough for a school's worth of new PCs, few enough that whoever can reach the
# enrolment endpoint cannot fill the database.
MAX_PENDING = 1000
TOKEN_HOURS_DEFAULT = 24
TOKEN_HOURS_MAX = 24 * 30
TOKEN_USES_MAX = 1000
SERVER_ROLES = ("walrus", "cc", "nc", "sc", "watch")
# Names per query of a look-up of many hosts (well under the 999 host parameters of older SQLite).
PEERS_PER_QUERY = 500
# How a join token stands (``token_standing``).
USABLE, USED_UP, EXPIRED = "usable", "used up", "expired"


class EnrolmentRefused(Exception):
    """An enrolment, approval or token was refused; ``status`` is the HTTP answer, ``field`` the field at fault."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class IssuedToken:
    """A new join token: its record and the secret itself, shown once."""

    record: JoinToken
    secret: str


def peer_of(name: str) -> Peer | None:
    """The trusted host ``name`` (an active key), as ``luhyaapi.trust`` asks for it on the CLC host."""
    credential = HostCredential.objects.filter(name=name, state=State.ACTIVE).first()
    return None if credential is None else _peer(credential)


def peers_of(names: set[str]) -> dict[str, Peer]:
    """The trusted hosts among ``names``, by name, in a few queries (a bus consumer's batch names hundreds)."""
    ordered = sorted(names)
    return {credential.name: _peer(credential)
            for start in range(0, len(ordered), PEERS_PER_QUERY)
            for credential in HostCredential.objects.filter(name__in=ordered[start:start + PEERS_PER_QUERY],
                                                            state=State.ACTIVE)}


def _peer(credential: HostCredential) -> Peer:
    roles = frozenset({PC}) if credential.kind == Kind.PC else credential.role_set
    return Peer(credential.name, credential.public_key, roles, credential.cluster, credential.mac)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def enrol(request: EnrolmentRequest, *, address: str | None, via: Peer | None = None) -> HostCredential:
    """Record a host's key: active with a valid join token, pending otherwise (a key already known gets the same
    answer again). ``via`` is the CC that passed the request on
    (it may do so only for its own cluster's nodes and PCs). Raises EnrolmentRefused: 400 for a request that does
    not add up, 403 for a wrong cluster or join token, 409 for a name enrolled with another key (revoke that
    first), 429 when too many wait for approval."""
    _check_request(request, via)
    with transaction.atomic():
        existing = HostCredential.objects.select_for_update().filter(name=request.name).first()
        if existing is not None and existing.state == State.ACTIVE:
            if existing.public_key == request.public_key:
                return existing
            raise EnrolmentRefused(409, f"{request.name} is enrolled with another key ({existing.fingerprint}); "
                                        "if this host was reinstalled, revoke the old key first", "public_key")
        if (existing is not None and existing.state == State.PENDING and existing.public_key != request.public_key
                and not request.join_token):
            # Else anyone who reaches this endpoint could swap the key an administrator is about to approve.
            raise EnrolmentRefused(409, f"another key ({existing.fingerprint}) waits for approval under the name "
                                        f"{request.name}; an administrator rejects it first", "public_key")
        # A revoked host comes back only by an administrator's approval: a token left in its configuration (with
        # uses to spare) would otherwise undo the revocation at its next start.
        revoked = existing is not None and existing.state == State.REVOKED
        token = _spend(request.join_token, request) if request.join_token and not revoked else None
        if token is None and existing is None and \
                HostCredential.objects.filter(state=State.PENDING).count() >= MAX_PENDING:
            raise EnrolmentRefused(429, f"{MAX_PENDING} hosts already wait for approval; approve or reject them "
                                        "first, or enrol this one with a join token")
        now = timezone.now()
        values = {"kind": request.kind, "roles": ",".join(sorted(request.roles)), "cluster": request.cluster,
                  "mac": request.mac, "public_key": request.public_key, "fingerprint": fingerprint(request.public_key),
                  "address": address, "requested_at": now, "revoked_at": None, "revoked_by": "",
                  "state": State.ACTIVE if token else State.PENDING, "approved_at": now if token else None,
                  "approved_by": f"join token {token.label or token.pk}" if token else "",
                  "owner_group": token.owner_group if token is not None and request.kind == Kind.PC else None}
        credential, _ = HostCredential.objects.update_or_create(name=request.name, defaults=values)
        if token is not None and token.owner_group_id and request.kind == Kind.PC:
            Host.objects.filter(mac=request.mac, owner_group__isnull=True).update(owner_group=token.owner_group)
    logger.info("enrolment: %s %s (%s) from %s: %s", request.kind, request.name, credential.fingerprint, address,
                credential.state)
    return credential


def _check_request(request: EnrolmentRequest, via: Peer | None) -> None:
    if request.kind == Kind.PC:
        if request.roles != ["nc"]:
            raise EnrolmentRefused(400, "a classroom PC runs a node controller only (roles: nc)", "roles")
        if not request.mac:
            raise EnrolmentRefused(400, "a classroom PC is known by its MAC address; send it", "mac")
    if via is not None and via.cluster != request.cluster:
        raise EnrolmentRefused(403, f"cluster controller {via.name} passes on enrolments of cluster {via.cluster} "
                                    "only", "cluster")
    if via is not None and not set(request.roles) <= {"nc", "sc"}:
        raise EnrolmentRefused(403, "a cluster controller passes on enrolments of its nodes and PCs only; other "
                                    "servers enrol with the cloud controller", "roles")


def _spend(secret: str, request: EnrolmentRequest) -> JoinToken:
    """Use the join token ``secret`` once for ``request``; EnrolmentRefused (403) unless it fits."""
    token = JoinToken.objects.select_for_update().filter(digest=digest(secret)).first()
    if token is None or token_standing(token) != USABLE:
        raise EnrolmentRefused(403, "unknown, used up or expired join token", "join_token")
    if token.kind != request.kind or token.cluster != request.cluster:
        raise EnrolmentRefused(403, f"this join token is for a {token.kind} of cluster {token.cluster}", "join_token")
    if request.kind == Kind.SERVER and not set(request.roles) <= set(token.roles.split(",")):
        raise EnrolmentRefused(403, f"this join token is for roles {token.roles} only", "join_token")
    if request.kind == Kind.PC and token.owner_group_id:
        elsewhere = Host.objects.filter(mac=request.mac).exclude(owner_group__isnull=True).first()
        if elsewhere is not None and not authz.within(token.owner_group.path, elsewhere.owner_group.path):
            raise EnrolmentRefused(403, "a PC with this MAC address is recorded outside the join token's "
                                        "owner-group", "join_token")
    token.uses_left -= 1
    token.save(update_fields=["uses_left"])
    return token


def token_standing(token: JoinToken, now: datetime | None = None) -> str:
    """Whether hosts may still enrol with ``token``: ``USABLE``, ``USED_UP`` (no use left) or ``EXPIRED``."""
    if token.uses_left < 1:
        return USED_UP
    if token.expires <= (now or timezone.now()):
        return EXPIRED
    return USABLE


# What people may do with keys and tokens.

def key_kinds(actor: authz.Actor) -> list[str]:
    """The kinds of host whose keys the actor manages and for which they issue join tokens: servers and PCs for the
    root's administrators, PCs for whoever may create PCs somewhere, none for anyone else."""
    return [kind for kind, resource_type in ((Kind.SERVER, Type.SERVER), (Kind.PC, Type.HOST))
            if authz.may_type(actor, "create", resource_type)]


def credential_owner(credential: HostCredential) -> tuple[str, str]:
    """The resource type and owner path a key is judged as: a server's is the cloud's; a PC's is its record's
    owner-group, else the owner-group of the join token it came with, else the root's (``manageable`` is the same
    rule in the database)."""
    if credential.kind == Kind.SERVER:
        return Type.SERVER, authz.ROOT_PATH
    host = Host.objects.select_related("owner_group").filter(mac=credential.mac).first()
    if host is not None and host.owner_group_id:
        return Type.HOST, host.owner_group.path
    owner = OwnerGroup.objects.filter(pk=credential.owner_group_id).values_list("path", flat=True).first()
    return Type.HOST, owner or authz.ROOT_PATH


def may_manage(actor: authz.Actor, credential: HostCredential) -> bool:
    """Approving, rejecting and revoking a key is creating (or removing) the host it lets in."""
    return authz.allows(actor, "create", *credential_owner(credential))


def manageable(actor: authz.Actor) -> QuerySet[HostCredential]:
    """The keys the actor may see and manage: every key for the root's administrators, their PCs' for others."""
    credentials, kinds = HostCredential.objects.all(), key_kinds(actor)
    if Kind.SERVER in kinds:
        return credentials
    if not kinds:
        return credentials.none()
    groups = authz.groups_within(actor)
    grouped = Host.objects.filter(owner_group__isnull=False).values("mac")
    ours = Q(mac__in=Host.objects.filter(owner_group__in=groups).values("mac")) | (
        ~Q(mac__in=grouped) & Q(owner_group__in=groups))
    if authz.allows(actor, "create", Type.HOST, authz.ROOT_PATH):
        ours |= ~Q(mac__in=grouped) & Q(owner_group__isnull=True)
    return credentials.filter(ours, kind=Kind.PC)


def find_keys(actor: authz.Actor, query: str = "", state: str = "") -> QuerySet[HostCredential]:
    """The keys the actor may manage (``manageable``) whose name, MAC or fingerprint contain ``query``, in ``state``
    if given: those waiting for approval first, then the active, then the revoked, each by name."""
    keys = manageable(actor)
    if query:
        keys = keys.filter(Q(name__icontains=query) | Q(mac__icontains=query) | Q(fingerprint__icontains=query))
    if state:
        keys = keys.filter(state=state)
    waiting_first = Case(When(state=State.PENDING, then=Value(0)), When(state=State.ACTIVE, then=Value(1)),
                         default=Value(2), output_field=IntegerField())
    return keys.order_by(waiting_first, "name")


def keys_by_name(actor: authz.Actor, names: Iterable[str]) -> dict[str, HostCredential]:
    """The key of each host called one of ``names`` that has one (servers enrol under their name, and so does a
    PC's node controller), each with ``manageable``: whether the actor may approve or revoke it."""
    keys = {key.name: key for key in HostCredential.objects.filter(name__in=set(names))}
    _mark_manageable(actor, keys.values())
    return keys


def keys_by_mac(actor: authz.Actor, macs: Iterable[str]) -> dict[str, HostCredential]:
    """The key of each classroom PC of ``macs`` that has one, each with ``manageable``: its active key, else its
    pending one, else its revoked one (a PC enrolled again under another name has several), the newest first."""
    rank = {State.ACTIVE: 0, State.PENDING: 1, State.REVOKED: 2}
    keys: dict[str, HostCredential] = {}
    for key in HostCredential.objects.filter(kind=Kind.PC, mac__in=set(macs)).order_by("-requested_at", "name"):
        if key.mac not in keys or rank[key.state] < rank[keys[key.mac].state]:
            keys[key.mac] = key
    _mark_manageable(actor, keys.values())
    return keys


def _mark_manageable(actor: authz.Actor, keys: Iterable[HostCredential]) -> None:
    keys = list(keys)
    ours = set(manageable(actor).filter(pk__in=[key.pk for key in keys]).values_list("pk", flat=True))
    for key in keys:
        key.manageable = key.pk in ours


def approve(credential: HostCredential, actor: authz.Actor, fingerprint_seen: str) -> HostCredential:
    """Trust a pending key, the one whose fingerprint the administrator compared with the host's
    (``fingerprint_seen``). EnrolmentRefused: 409 for a key that is not pending, or another key than the one seen."""
    _require_manage(actor, credential)
    if credential.state != State.PENDING:
        raise EnrolmentRefused(409, f"the key of {credential.name} is {credential.state}, not waiting for approval")
    if fingerprint_seen != credential.fingerprint:
        raise EnrolmentRefused(409, f"the key of {credential.name} waiting now is {credential.fingerprint}, not the "
                                    f"one approved ({fingerprint_seen or 'none given'}); compare it with the host's "
                                    "again", "fingerprint")
    credential.state, credential.approved_at, credential.approved_by = State.ACTIVE, timezone.now(), actor.username
    credential.save(update_fields=["state", "approved_at", "approved_by"])
    logger.info("enrolment: %s approved the key of %s (%s)", actor.username, credential.name, credential.fingerprint)
    return credential


UNNAMED_ACTOR = "an administrator outside your owner-group"


def acted_by(actor: authz.Actor, name: str) -> str:
    """Who approved or revoked a key (``approved_by``/``revoked_by``) as ``actor`` may read it: a join token, the
    actor themself or a person of their own branch by name; anyone else unnamed (one school's people are never named
    to another school, and a cloud administrator's login is not a school's business)."""
    if not name or name.startswith("join token ") or name == actor.username:
        return name
    path = Account.objects.filter(user__username=name).values_list("owner_group__path", flat=True).first()
    if path is not None and actor.path is not None and authz.within(actor.path, path):
        return name
    return UNNAMED_ACTOR


def revoke(credential: HostCredential, actor: authz.Actor) -> HostCredential:
    """Stop trusting a key (active or pending): the host's calls are refused until it enrols again and an
    administrator approves it (EnrolmentRefused 409 for a key revoked already)."""
    _require_manage(actor, credential)
    if credential.state == State.REVOKED:
        raise EnrolmentRefused(409, f"the key of {credential.name} was revoked already "
                                    f"({acted_by(actor, credential.revoked_by)})")
    credential.state, credential.revoked_at, credential.revoked_by = State.REVOKED, timezone.now(), actor.username
    credential.save(update_fields=["state", "revoked_at", "revoked_by"])
    logger.warning("enrolment: %s revoked the key of %s (%s)", actor.username, credential.name,
                   credential.fingerprint)
    return credential


def _require_manage(actor: authz.Actor, credential: HostCredential) -> None:
    if not may_manage(actor, credential):
        resource_type, owner = credential_owner(credential)
        authz.require_type(actor, "create", resource_type)
        raise authz.Denied(f"you may not manage the key of {credential.name}",
                           status=403 if authz.allows(actor, "read", resource_type, owner) else 404)


def issue_join_token(actor: authz.Actor, *, kind: str, cluster: str, roles: list[str] | None = None,
                     owner_group: OwnerGroup | None = None, uses: int = 1, hours: float = TOKEN_HOURS_DEFAULT,
                     label: str = "") -> IssuedToken:
    """A new join token (the secret is in the answer only): for servers of ``roles`` (the root's administrators),
    or for PCs going into ``owner_group`` (who may create PCs there). EnrolmentRefused 400 naming a bad field."""
    roles = sorted(set(roles or []))
    if kind == Kind.SERVER:
        if not roles or not set(roles) <= set(SERVER_ROLES):
            raise EnrolmentRefused(400, f"a server token names its roles, some of {', '.join(SERVER_ROLES)}", "roles")
        if owner_group is not None:
            raise EnrolmentRefused(400, "servers belong to the whole cloud: a server token has no owner-group",
                                   "owner_group")
        authz.require_create(actor, Type.SERVER, authz.ROOT_PATH)
    elif kind == Kind.PC:
        if roles and roles != ["nc"]:
            raise EnrolmentRefused(400, "a PC token enrols node controllers of PCs: no other roles", "roles")
        roles = ["nc"]
        authz.require_create(actor, Type.HOST, owner_group.path if owner_group else authz.ROOT_PATH)
    else:
        raise EnrolmentRefused(400, "kind is server or pc", "kind")
    try:
        validate_name(cluster, "cluster")
        label = validate_display_name(label, "label") if label.strip() else ""
    except InvalidValue as exc:
        raise EnrolmentRefused(400, exc.message, exc.field) from None
    if not 1 <= uses <= TOKEN_USES_MAX:
        raise EnrolmentRefused(400, f"uses must be 1 to {TOKEN_USES_MAX}", "uses")
    if not 0 < hours <= TOKEN_HOURS_MAX:
        raise EnrolmentRefused(400, f"hours must be more than 0 and at most {TOKEN_HOURS_MAX}", "hours")
    secret = secrets.token_urlsafe(24)
    record = JoinToken.objects.create(digest=digest(secret), label=label, kind=kind, roles=",".join(roles),
                                      cluster=cluster, owner_group=owner_group, uses_left=uses,
                                      expires=timezone.now() + timedelta(hours=hours), created_by=actor.username)
    logger.info("enrolment: %s issued join token %s (%s, cluster %s, %d uses)", actor.username, record.pk, kind,
                cluster, uses)
    return IssuedToken(record, secret)


def tokens_of(actor: authz.Actor) -> QuerySet[JoinToken]:
    """The join tokens the actor may see and withdraw: all for the root's administrators, else their PC tokens."""
    tokens, kinds = JoinToken.objects.select_related("owner_group"), key_kinds(actor)
    if Kind.SERVER in kinds:
        return tokens
    groups = authz.groups_within(actor) if Kind.PC in kinds else OwnerGroup.objects.none()
    return tokens.filter(kind=Kind.PC, owner_group__in=groups)


def withdraw_token(token: JoinToken) -> None:
    """Forget a join token: nothing enrols with it any more (hosts it enrolled stay)."""
    token.delete()
