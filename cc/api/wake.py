"""API view of the cluster controller for wake-on-LAN: an adapter over ``cc.services.wake``."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from cc.services.wake import WakeFailed, wake_mac
from luhyaapi.drf import IsSignedNode, callers


class WakeRequestSerializer(serializers.Serializer):
    """``{"mac": "52:54:00:12:34:56", "broadcast": "10.0.1.255"}``; ``broadcast`` may be left out (the CC's
    ``cc.wake_broadcast``). Both are checked by the service before anything is sent."""

    mac = serializers.CharField(max_length=32, trim_whitespace=False)
    broadcast = serializers.CharField(max_length=64, required=False, allow_blank=True, trim_whitespace=False)


class WakeView(APIView):
    """``POST hosts/wake/`` (signed, from the CLC): send the magic packet for a machine of this cluster's LAN.
    202 once sent (whether it powers on shows when it registers), 400 naming a bad field, 502 if it could not be
    sent."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("clc")

    @extend_schema(request=WakeRequestSerializer, responses={202: inline_serializer("MagicPacket", {
        "mac": serializers.CharField(), "broadcast": serializers.CharField(), "port": serializers.IntegerField(),
        "interface": serializers.CharField()})})
    def post(self, request):
        wanted = WakeRequestSerializer(data=request.data)
        wanted.is_valid(raise_exception=True)
        try:
            wake = wake_mac(wanted.validated_data["mac"], wanted.validated_data.get("broadcast", ""))
        except WakeFailed as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_502_BAD_GATEWAY)
        return Response({"mac": wake.mac, "broadcast": wake.broadcast, "port": wake.port,
                         "interface": wake.interface}, status=status.HTTP_202_ACCEPTED)
