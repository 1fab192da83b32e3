"""Authentication of signed node-to-node calls and the permissions built on it (loaded by DRF's settings, so it
must not import DRF's views)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from rest_framework import authentication, exceptions, permissions

from luhyaapi.signing import (
    HEADER_CONTENT_SHA256,
    HEADER_SIGNATURE,
    UNSIGNED_PAYLOAD,
    SignatureError,
    canonical_path,
    verify,
)

logger = logging.getLogger("educloud.security")


@dataclass(frozen=True)
class SignedNode:
    """The principal of a correctly signed node-to-node request."""

    name: str
    is_authenticated: bool = True
    is_staff: bool = False
    is_active: bool = True


class SignedRequestAuthentication(authentication.BaseAuthentication):
    """Accept requests signed with the cloud key; refuse and log stale (401) or wrongly signed (403) ones.
    A view with ``unsigned_payload = True`` (a streamed upload) accepts a body signed as UNSIGNED-PAYLOAD, so the
    body is never read into memory here."""

    def authenticate(self, request):
        django_request = request._request
        headers = {key: value for key, value in django_request.headers.items()}
        if HEADER_SIGNATURE not in headers:
            return None
        try:
            path = canonical_path(django_request.path, django_request.META.get("QUERY_STRING", ""))
            view = (request.parser_context or {}).get("view")
            streamed = (getattr(view, "unsigned_payload", False)
                        and headers.get(HEADER_CONTENT_SHA256) == UNSIGNED_PAYLOAD)
            body = None if streamed else django_request.body
            sender = verify(settings.EDUCLOUD.cloud_key, django_request.method, path, body, headers)
        except SignatureError as exc:
            logger.warning("refused %s %s from %s (sender %r): %s", django_request.method,
                           django_request.get_full_path(), django_request.META.get("REMOTE_ADDR"),
                           headers.get("X-Educloud-Sender"), exc.reason)
            if exc.status == 403:
                raise exceptions.PermissionDenied(exc.reason) from None
            raise exceptions.AuthenticationFailed(exc.reason) from None
        return SignedNode(sender), "signature"

    def authenticate_header(self, request) -> str:
        return 'Educloud-HMAC realm="educloud"'


class IsSignedNode(permissions.BasePermission):
    """Only other roles of this cloud (signed calls)."""

    message = "this call is for eduCloud roles only and must be signed"

    def has_permission(self, request, view) -> bool:
        if isinstance(request.user, SignedNode):
            return True
        if not request.user or not request.user.is_authenticated:
            logger.warning("refused unsigned %s %s from %s", request.method, request.path,
                           request.META.get("REMOTE_ADDR"))
        return False


class IsSignedNodeOrStaff(permissions.BasePermission):
    """Other roles (signed), or a logged-in administrator of the console."""

    message = "sign the call, or log in as an administrator"

    def has_permission(self, request, view) -> bool:
        user = request.user
        return isinstance(user, SignedNode) or bool(user and user.is_authenticated and user.is_staff)

