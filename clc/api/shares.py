"""The storage controller's question about a WebDAV login (``POST dav/authorize/``, signed by an SC)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from clc.services.shares import check_share_login
from luhyaapi.drf import IsSignedNode, callers


class ShareLoginSerializer(serializers.Serializer):
    """A WebDAV login as the SC received it: the user name and password of HTTP Basic, and the client's address."""

    username = serializers.CharField(max_length=150, trim_whitespace=False)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)
    address = serializers.IPAddressField(required=False, allow_blank=True, default="")


SHARE_LOGIN = inline_serializer("ShareLogin", {
    "authenticated": serializers.BooleanField(),
    "detail": serializers.CharField(),
    "username": serializers.CharField(),
    "owner_group": serializers.CharField(),
    "shares": inline_serializer("ShareGrant", {"path": serializers.CharField(), "read": serializers.BooleanField(),
                                                "write": serializers.BooleanField()}, many=True)})


class ShareLoginView(APIView):
    """``POST dav/authorize/`` (signed, storage controllers only): whether the user name and password are an
    account's (``authenticated``; a refusal's ``detail`` says why, a locked login how long), and then its user name
    (the home folder), owner-group and the owner-group shares it may read or write. 200 for every login checked,
    refused or not; 400 naming a malformed field."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("sc")

    @extend_schema(request=ShareLoginSerializer, responses={200: SHARE_LOGIN})
    def post(self, request):
        login = ShareLoginSerializer(data=request.data)
        login.is_valid(raise_exception=True)
        data = login.validated_data
        return Response(check_share_login(data["username"], data["password"], data["address"]).model_dump(mode="json"))
