"""The CLC's administration of this cluster: draining and forgetting a node controller, and the usage of the
cluster's port and address pools (signed, from the CLC only); adapters over ``cc.services.node_removal`` and
``cc.services.usage``."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from cc.services.instances import InstanceRefused
from cc.services.node_removal import drain_node, forget_node
from cc.services.usage import cluster_usage
from luhyaapi.drf import IsSignedNode, callers
from luhyaapi.validators import validate_name


class DrainSerializer(serializers.Serializer):
    """``draining``: true (the default) to place nothing more on the node, false to take it back."""

    draining = serializers.BooleanField(required=False, default=True)


DRAINED = inline_serializer("DrainedNode", {"name": serializers.CharField(), "draining": serializers.BooleanField()})


class NodeDrainView(APIView):
    """``POST nodes/<name>/drain/`` (signed, from the CLC): drain the node (or undrain it with
    ``{"draining": false}``); 404 for a node this cluster does not know."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("clc")

    @extend_schema(request=DrainSerializer, responses={200: DRAINED})
    def post(self, request, name: str):
        validate_name(name, "name")
        body = DrainSerializer(data=request.data if isinstance(request.data, dict) else {"draining": request.data})
        body.is_valid(raise_exception=True)
        try:
            node = drain_node(name, body.validated_data["draining"])
        except InstanceRefused as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        return Response({"name": node.name, "draining": node.draining})


class NodeView(APIView):
    """``DELETE nodes/<name>/`` (signed, from the CLC): forget a drained node that holds no instance; 409 names
    what it still holds."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("clc")

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, name: str):
        validate_name(name, "name")
        try:
            forget_node(name)
        except InstanceRefused as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        return Response(status=status.HTTP_204_NO_CONTENT)


class UsageView(APIView):
    """``GET usage/`` (signed, from the CLC): the cluster's port and address pools, their leases and free counts,
    and whether its DHCP server runs."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("clc")

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(cluster_usage())
