"""API view of the cluster controller for its classroom PCs' kiosks: an adapter over ``cc.services.desktops``."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from cc.services.desktops import DesktopsUnavailable, host_desktops
from cc.services.nodes import WrongCluster
from luhyaapi.drf import IsSignedNode, callers, require_sender
from luhyaapi.validators import validate_mac


class HostDesktopsView(APIView):
    """``GET hosts/<mac>/desktops/`` (signed, by that PC's node controller): the PC and the local desktops its
    kiosk offers, from the CLC. 400 naming ``mac`` if malformed, 404 if the CLC does not know the PC, 409 if it is
    another cluster's, 502 if the CLC cannot be reached."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("pc")

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, mac: str):
        require_sender(request, mac=validate_mac(mac, "mac"))
        try:
            return Response(host_desktops(mac))
        except WrongCluster as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        except DesktopsUnavailable as exc:
            return Response({"detail": str(exc)}, status=exc.status)
