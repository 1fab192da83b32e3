"""File shares (WebDAV, served by the storage controller): who a login is and which shares it reaches.

The SC keeps no user list: for each WebDAV login it asks the CLC (``POST /clc/api/1.0/dav/authorize/``, signed),
which checks the password through Django's ``authenticate`` (so the login throttle of ``clc.services.logins``
counts a WebDAV guesser as it counts one at the console, by the address the SC saw) and answers with the account's
home and every owner-group share it may read or write, each decided by ``clc.services.authz`` (type ``share``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote

from django.contrib.auth import authenticate
from django.http import HttpRequest

from clc.services import authz
from clc.services.commands import online_servers
from clc.services.logins import refusal_of
from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.shares import MOUNT, ShareGrant, ShareLogin
from luhyaapi.trust import own_key
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.choices import RoleChoices
from luhyadb.models import Account, Instance, Server

logger = logging.getLogger(__name__)

WRONG = "wrong user name or password"


def shares_of(actor: authz.Actor) -> tuple[ShareGrant, ...]:
    """Every owner-group share the actor may read or write (the one rule, type ``share``), by path."""
    found = []
    for group in authz.groups_within(actor).order_by("path"):
        read = authz.allows(actor, "read", Type.SHARE, group.path)
        write = authz.allows(actor, "write", Type.SHARE, group.path)
        if read or write:
            found.append(ShareGrant(path=group.path, read=read, write=write))
    return tuple(found)


def check_share_login(username: str, password: str, address: str) -> ShareLogin:
    """Check a WebDAV login made from ``address`` (the client's address as the SC saw it: the throttle counts
    failures against it, not against the SC). Never raises for a refused login: the answer says why."""
    request = HttpRequest()
    request.META["REMOTE_ADDR"] = address
    user = authenticate(request, username=username, password=password)
    if user is None:
        refused = refusal_of(request)
        return ShareLogin(authenticated=False, detail=str(refused) if refused is not None else WRONG)
    actor = authz.actor_for(user)
    if not actor.is_person:
        return ShareLogin(authenticated=False, detail="your login has no eduCloud account")
    return ShareLogin(authenticated=True, username=user.get_username(), owner_group=actor.path,
                      shares=shares_of(actor))


def home_share_url(user) -> str | None:
    """The address of the person's home folder on a storage controller (the portal's "My files"): an online SC of
    the cluster of their latest desktop, else the first online SC; None for someone without an account or when no
    SC is known."""
    actor = authz.actor_for(user)
    if not actor.is_person:
        return None
    servers = online_servers(RoleChoices.SC)
    latest = (Instance.objects.filter(assigned_to_id=user.pk).exclude(cluster="").order_by("-updated")
              .values_list("cluster", flat=True).first())
    server = (servers.filter(cluster=latest).order_by("name").first() if latest else None) or \
        servers.order_by("cluster", "name").first()
    if server is None:
        return None
    return f"{server.api_url.rstrip('/')}{MOUNT}/home/{quote(actor.username, safe='')}/"


@dataclass(frozen=True)
class ShareUsageRow:
    """One home or owner-group share as its SC counts it: ``kind`` "home" (``owner`` a user name) or "group"
    (``owner`` an owner-group's path), the SC keeping it, bytes used and the quota."""

    sc: str
    kind: str
    owner: str
    used_bytes: int
    quota_bytes: int

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.used_bytes / self.quota_bytes)) if self.quota_bytes else 0


@dataclass(frozen=True)
class ShareUsage:
    """The rows the person may see, and the SCs that did not answer (their shares are not listed)."""

    rows: list[ShareUsageRow]
    unreachable: list[str]


# The most shares read from one SC for the page: a school's homes and groups, with room to spare.
MAX_SHARES_PER_SC = 5000
SHARES_PAGE = 500


def _shares_of_sc(server: Server) -> list[dict]:
    client = RoleClient(server.api_url, own_key(), timeout=30)
    found: list[dict] = []
    while len(found) < MAX_SHARES_PER_SC:
        page = client.get(f"/sc/api/1.0/shares/?limit={SHARES_PAGE}&offset={len(found)}")
        found += page["results"]
        if not page.get("next") or not page["results"]:
            break
    return found


def share_usage(actor: authz.Actor) -> ShareUsage:
    """What the homes and shares of every online SC hold, as far as the person may see: a group share where they
    may read type ``share`` of its owner-group, a home where they may read its account (a school's administrator
    sees their school's, a teacher their groups' shares, a student their classes' and their own home); the
    fullest first."""
    readable_accounts = set(authz.readable(actor, Account.objects.all()).values_list("user__username", flat=True))
    rows, unreachable = [], []
    servers = online_servers(RoleChoices.SC)
    for server in servers.order_by("name"):
        try:
            shares = _shares_of_sc(server)
        except RemoteError as exc:
            logger.warning("shares: usage of sc %s not read: %s", server.name, exc)
            unreachable.append(server.name)
            continue
        for share in shares:
            if share["kind"] == "home":
                visible = share["owner"] == actor.username or share["owner"] in readable_accounts
            else:
                visible = authz.allows(actor, "read", Type.SHARE, share["owner"])
            if visible:
                rows.append(ShareUsageRow(server.name, share["kind"], share["owner"], int(share["used_bytes"]),
                                          int(share["quota_bytes"])))
    rows.sort(key=lambda row: (-row.used_bytes, row.kind, row.owner))
    return ShareUsage(rows, unreachable)
