"""The pre-signed upload token: lets a browser send the data of one upload (the CLC makes the token)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rest_framework import authentication, exceptions

from luhyaapi import trust
from luhyaapi.drf import IsSignedNodeOrStaff
from luhyaapi.signing import SignatureError, verify_upload_token

logger = logging.getLogger("educloud.security")


@dataclass(frozen=True)
class UploadTokenHolder:
    """The principal of a request that carries a valid token for ``upload_id`` (and for nothing else)."""

    upload_id: str
    is_authenticated: bool = True
    is_staff: bool = False
    is_active: bool = True


class UploadTokenAuthentication(authentication.BaseAuthentication):
    """``?token=<issuer>.<signature>&expires=<epoch>``: the CLC host ``issuer`` signed ``upload_id`` and
    ``expires`` with its key (``luhyaapi.signing.make_upload_token``). A request without ``token`` is left to the
    other authentications; a wrong or expired token, or one not made by a CLC, is a 401."""

    def authenticate(self, request):
        token = request.query_params.get("token")
        if token is None:
            return None
        upload_id = (request.parser_context or {}).get("kwargs", {}).get("upload_id", "")
        try:
            verify_upload_token(_clc_key_of, upload_id, token, request.query_params.get("expires", ""))
        except SignatureError as exc:
            logger.warning("refused %s %s from %s: %s", request.method, request.path,
                           request.META.get("REMOTE_ADDR"), exc.reason)
            raise exceptions.AuthenticationFailed(exc.reason) from None
        return UploadTokenHolder(upload_id), "upload-token"

    def authenticate_header(self, request) -> str:
        return 'Educloud-Ed25519 realm="educloud"'


def _clc_key_of(name: str) -> str | None:
    """Only a cloud controller makes upload tokens."""
    issuer = trust.peer(name)
    return issuer.public_key if issuer is not None and "clc" in issuer.roles else None


class IsSignedNodeOrStaffOrUploadToken(IsSignedNodeOrStaff):
    """Other roles (signed), a logged-in administrator, or the holder of this very upload's token."""

    message = "sign the call, log in as an administrator, or use the upload's pre-signed URL"

    def has_permission(self, request, view) -> bool:
        user = request.user
        if isinstance(user, UploadTokenHolder):
            return user.upload_id == view.kwargs.get("upload_id")
        return super().has_permission(request, view)
