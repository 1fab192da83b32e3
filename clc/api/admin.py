"""API views of the cloud controller for its administrators: a cluster's port and address usage (as its CC
reports it) and the health of the database, broker, cache and each cluster's dnsmasq; adapters over
``clc.services.usage`` and ``clc.services.health``."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from clc.api.authz import SignedOrPerson, require_type
from clc.services.health import system_health
from clc.services.hosts import MachineError
from clc.services.usage import cluster_usage
from luhyaapi.validators import validate_name
from luhyadb.choices import ResourceTypeChoices

CHECK = inline_serializer("HealthCheck", {"name": serializers.CharField(), "ok": serializers.BooleanField(),
                                          "detail": serializers.CharField()})


class ClusterUsageView(APIView):
    """``GET clusters/<cluster>/usage/``: which ports and addresses of the cluster's pools are leased, to which
    instance (and MAC), and how many are free, as the cluster's CC reports it (who may read cluster networks);
    409 if the cluster has no online CC, 502 if it fails."""

    permission_classes = [SignedOrPerson]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, cluster: str):
        validate_name(cluster, "cluster")
        require_type(request, "read", ResourceTypeChoices.NETWORK)
        try:
            return Response(cluster_usage(cluster))
        except MachineError as exc:
            return Response({"detail": str(exc)}, status=exc.status)


class HealthView(APIView):
    """``GET health/``: each check (database, broker, cache, each cluster's dnsmasq) with ``ok`` and what was found
    (who may read servers)."""

    permission_classes = [SignedOrPerson]

    @extend_schema(responses={200: serializers.ListSerializer(child=CHECK)})
    def get(self, request):
        require_type(request, "read", ResourceTypeChoices.SERVER)
        return Response(system_health())
