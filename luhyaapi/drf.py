"""Authentication of signed calls between the cloud's hosts and the permissions built on it (loaded by DRF's
settings, so it must not import DRF's views).

A signed call is authorized by what its sender's role needs, not by who it is alone: every API view says which
roles may call it signed (``signed_callers``, none by default), and a view that acts for one host checks that the
sender is that host (``require_sender``). A call from a role the view does not name is a 403, logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from rest_framework import authentication, exceptions, permissions

from luhyaapi import trust
from luhyaapi.config import ROLES
from luhyaapi.signing import (
    HEADER_CONTENT_SHA256,
    HEADER_SENDER,
    HEADER_SIGNATURE,
    MAX_SKEW_SECONDS,
    UNSIGNED_PAYLOAD,
    SignatureError,
    canonical_host,
    canonical_path,
    verify,
)

logger = logging.getLogger("educloud.security")

CALLER_ROLES = frozenset((*ROLES, trust.PC))


@dataclass(frozen=True)
class SignedNode:
    """The principal of a correctly signed call: the sending host, the roles it may call as, its cluster and, for a
    classroom PC, its MAC."""

    name: str
    roles: frozenset[str] = field(default_factory=frozenset)
    cluster: str = ""
    mac: str = ""
    is_authenticated: bool = True
    is_staff: bool = False
    is_active: bool = True
    is_superuser: bool = False
    pk: None = None  # not a person: code that files a record under a user files it under nobody


def callers(*roles: str) -> frozenset[str]:
    """A view's ``signed_callers``: role names of the cloud (``pc`` for a classroom PC), checked here."""
    unknown = set(roles) - CALLER_ROLES
    if unknown:
        raise ValueError(f"unknown caller roles {sorted(unknown)}; known: {sorted(CALLER_ROLES)}")
    return frozenset(roles)


class SignedRequestAuthentication(authentication.BaseAuthentication):
    """Accept calls signed by an enrolled host (``luhyaapi.trust``), each nonce once; refuse and log stale,
    replayed or unknown ones (401) and wrongly signed ones (403). A view with ``unsigned_payload = True`` (a
    streamed upload) accepts a body signed as UNSIGNED-PAYLOAD, so the body is never read into memory here."""

    def authenticate(self, request):
        django_request = request._request
        headers = dict(django_request.headers.items())
        if HEADER_SIGNATURE not in headers:
            return None
        found: dict[str, trust.Peer | None] = {}

        def public_key_of(name: str) -> str | None:
            found["peer"] = trust.peer(name)
            return found["peer"].public_key if found["peer"] else None

        try:
            path = canonical_path(django_request.path, django_request.META.get("QUERY_STRING", ""))
            host = canonical_host(django_request.get_host(), django_request.scheme)
            view = (request.parser_context or {}).get("view")
            streamed = (getattr(view, "unsigned_payload", False)
                        and headers.get(HEADER_CONTENT_SHA256) == UNSIGNED_PAYLOAD)
            body = None if streamed else django_request.body
            sender, nonce = verify(public_key_of, django_request.method, host, path, body, headers)
            if not trust.remember_nonce(sender, nonce, 2 * MAX_SKEW_SECONDS):
                raise SignatureError(401, "replayed request (its nonce was used before)")
        except SignatureError as exc:
            logger.warning("refused %s %s from %s (sender %r): %s", django_request.method,
                           django_request.get_full_path()[:200], django_request.META.get("REMOTE_ADDR"),
                           headers.get(HEADER_SENDER, "")[:80], exc.reason)
            if exc.status == 403:
                raise exceptions.PermissionDenied(exc.reason) from None
            raise exceptions.AuthenticationFailed(exc.reason) from None
        peer = found["peer"]
        return SignedNode(peer.name, peer.roles, peer.cluster, peer.mac), "signature"

    def authenticate_header(self, request) -> str:
        return 'Educloud-Ed25519 realm="educloud"'


def signed_node(request) -> SignedNode | None:
    """The host behind a signed call, or None for anyone else."""
    return request.user if isinstance(request.user, SignedNode) else None


def caller_allowed(request, view) -> bool:
    """Whether a signed call's sender has a role the view takes (``view.signed_callers``); refusals are logged."""
    node = signed_node(request)
    if node is None:
        return False
    wanted: Iterable[str] = getattr(view, "signed_callers", frozenset())
    if node.roles & frozenset(wanted):
        return True
    logger.warning("refused %s %s from %s (roles %s): this call is for %s", request.method, request.path[:200],
                   node.name, ",".join(sorted(node.roles)), ",".join(sorted(wanted)) or "people only")
    return False


def refusal_for(view) -> str:
    wanted = sorted(getattr(view, "signed_callers", frozenset()))
    return f"this call is for {', '.join(wanted)} hosts only" if wanted else "this call is not for signed hosts"


def require_sender(request, name: str = "", *, mac: str = "", cluster: str = "") -> None:
    """For views that act for one host: a signed caller must be that host (``name``/``mac``) or of that
    ``cluster``; else a 403 saying so. People are left to the view's own rule."""
    node = signed_node(request)
    if node is None:
        return
    if name and node.name != name:
        raise exceptions.PermissionDenied(f"{node.name} may act only for itself, not for {name}")
    if mac and node.mac != mac:
        raise exceptions.PermissionDenied(f"{node.name} may act only for its own MAC address")
    if cluster and node.cluster != cluster:
        raise exceptions.PermissionDenied(f"{node.name} belongs to another cluster than {cluster}")


class IsSignedNode(permissions.BasePermission):
    """Only hosts of this cloud whose role the view takes (signed calls)."""

    message = "this call is for eduCloud hosts only and must be signed"

    def has_permission(self, request, view) -> bool:
        if signed_node(request) is None:
            if not request.user or not request.user.is_authenticated:
                logger.warning("refused unsigned %s %s from %s", request.method, request.path[:200],
                               request.META.get("REMOTE_ADDR"))
            return False
        self.message = refusal_for(view)
        return caller_allowed(request, view)


class IsSignedNodeOrStaff(permissions.BasePermission):
    """Hosts whose role the view takes (signed), or a logged-in administrator of the console (Django staff)."""

    message = "sign the call, or log in as an administrator"

    def has_permission(self, request, view) -> bool:
        if signed_node(request) is not None:
            self.message = refusal_for(view)
            return caller_allowed(request, view)
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff)
