"""API of the clusters' network settings on the CLC (``networks/`` and ``networks/<cluster>/``): a serializer and a
viewset that hand every value to ``clc.services.networks``, where the rules are."""

from __future__ import annotations

from collections.abc import Mapping

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from clc.api.authz import AuthorizedViewSetMixin, is_signed
from clc.services.networks import (
    NETWORK_FIELDS,
    NetworkInUse,
    NetworkInvalid,
    as_cc_config,
    cc_config_of,
    delete_network,
    network_settings,
    save_network,
    validate_network,
)
from luhyaapi.drf import callers, require_sender
from luhyaapi.validators import validate_name
from luhyadb.choices import ResourceTypeChoices
from luhyadb.models import ClusterNetwork


class ClusterNetworkSerializer(serializers.ModelSerializer):
    """A cluster's network settings. Input is checked as a whole by ``validate_network`` (a PATCH is merged with
    the stored settings first); a refusal is a 400 with ``{field: ["field: what to change", ...]}``."""

    class Meta:
        model = ClusterNetwork
        fields = (*NETWORK_FIELDS, "updated")
        read_only_fields = ("updated",)

    def to_internal_value(self, data):
        if not isinstance(data, Mapping):
            raise serializers.ValidationError({"non_field_errors": ["send the settings as a JSON object"]})
        # "updated" is what a GET returned; sending a record back unchanged is allowed.
        fields = {key: value for key, value in data.items() if key != "updated"}
        if self.instance is not None:
            fields = (network_settings(self.instance) if self.partial else {"cluster": self.instance.cluster}) | fields
        try:
            return validate_network(fields, instance=self.instance)
        except NetworkInvalid as exc:
            raise serializers.ValidationError(exc.by_field()) from None

    def create(self, validated_data: dict) -> ClusterNetwork:
        return self._saved(validated_data, None)

    def update(self, instance: ClusterNetwork, validated_data: dict) -> ClusterNetwork:
        return self._saved(validated_data, instance)

    @staticmethod
    def _saved(values: dict, instance: ClusterNetwork | None) -> ClusterNetwork:
        try:
            return save_network(values, instance=instance)
        except NetworkInvalid as exc:  # another cluster took an address since the values were checked
            raise serializers.ValidationError(exc.by_field()) from None


class ClusterNetworkViewSet(AuthorizedViewSetMixin, viewsets.ModelViewSet):
    """Network settings per cluster: list, create, get, replace (PUT), change (PATCH), delete (409 while the
    cluster's instances run), and ``cc-config/``, the form its CC pulls."""

    queryset = ClusterNetwork.objects.all()
    serializer_class = ClusterNetworkSerializer
    resource_type = ResourceTypeChoices.NETWORK
    lookup_field = "cluster"
    lookup_value_regex = "[^/]+"

    def get_object(self):
        validate_name(self.kwargs["cluster"], "cluster")  # a bad name is a 400 naming the field, never a lookup
        return super().get_object()

    def perform_destroy(self, instance: ClusterNetwork) -> None:
        delete_network(instance)

    def handle_exception(self, exc):
        if isinstance(exc, NetworkInUse):
            return Response({"detail": str(exc)}, status=exc.status)
        return super().handle_exception(exc)

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"], url_path="cc-config", signed_callers=callers("cc"))
    def cc_config(self, request, cluster: str):
        """The settings as the cluster's CC applies them: for that CC (signed) and who may read networks. The CC is
        answered ``{}`` while its cluster has no settings (a normal state, not a missing page); people get a 404."""
        require_sender(request, cluster=validate_name(cluster, "cluster"))
        if is_signed(request):
            return Response(cc_config_of(cluster), status=status.HTTP_200_OK)
        return Response(as_cc_config(self.get_object()), status=status.HTTP_200_OK)
