"""The pre-signed upload token: lets a browser send the data of one upload (the CLC makes the token)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from rest_framework import authentication, exceptions

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
    """``?token=<hmac>&expires=<epoch>``: HMAC-SHA256 with the cloud key over ``upload:<upload_id>:<expires>``.
    A request without ``token`` is left to the other authentications; a wrong or expired token is a 401."""

    def authenticate(self, request):
        token = request.query_params.get("token")
        if token is None:
            return None
        upload_id = (request.parser_context or {}).get("kwargs", {}).get("upload_id", "")
        try:
            verify_upload_token(settings.EDUCLOUD.cloud_key, upload_id, token,
                                request.query_params.get("expires", ""))
        except SignatureError as exc:
            logger.warning("refused %s %s from %s: %s", request.method, request.path,
                           request.META.get("REMOTE_ADDR"), exc.reason)
            raise exceptions.AuthenticationFailed(exc.reason) from None
        return UploadTokenHolder(upload_id), "upload-token"

    def authenticate_header(self, request) -> str:
        return 'Educloud-HMAC realm="educloud"'


class IsSignedNodeOrStaffOrUploadToken(IsSignedNodeOrStaff):
    """Other roles (signed), a logged-in administrator, or the holder of this very upload's token."""

    message = "sign the call, log in as an administrator, or use the upload's pre-signed URL"

    def has_permission(self, request, view) -> bool:
        user = request.user
        if isinstance(user, UploadTokenHolder):
            return user.upload_id == view.kwargs.get("upload_id")
        return super().has_permission(request, view)
