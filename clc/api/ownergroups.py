"""API of the cloud controller for owner-groups (by path): list, create inside one's authority, get, change name,
description and permissions, delete (409 while in use); adapters over ``clc.services.ownergroups``."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import filters, serializers, viewsets
from rest_framework.response import Response

from clc.api.authz import AuthorizedViewSetMixin, actor
from clc.services.ownergroups import (
    ACTIONS,
    DEFAULT_KIND,
    KINDS,
    OwnerGroupRefused,
    change_owner_group,
    create_owner_group,
    delete_owner_group,
    permissions_of,
)
from luhyaapi.filters import SearchFilter
from luhyaapi.validators import OWNER_PATH_RE
from luhyadb.choices import ResourceTypeChoices
from luhyadb.models import OwnerGroup


@extend_schema_field({
    "type": "object", "propertyNames": {"enum": ResourceTypeChoices.values},
    "additionalProperties": {"type": "array", "items": {"enum": [*ACTIONS, "full"]}},
    "example": {"instance": ["read", "execute"], "image": ["full"]}})
class PermissionsField(serializers.Field):
    """The group's permissions as ``{"instance": ["read", "execute"], ...}``; the service checks what is sent."""

    def __init__(self, **kwargs) -> None:
        super().__init__(source="*", **kwargs)

    def to_representation(self, group: OwnerGroup) -> dict[str, list[str]]:
        return permissions_of(group)

    def to_internal_value(self, data) -> dict:
        return {"permissions": data}


class OwnerGroupSerializer(serializers.Serializer):
    path = serializers.CharField(max_length=255)
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    kind = serializers.ChoiceField(
        choices=[(kind, label) for kind, (label, _) in KINDS.items()], required=False, write_only=True,
        help_text=f"creation only: the new group's preset permissions (default {DEFAULT_KIND}); not with "
                  "permissions")
    permissions = PermissionsField(required=False)
    accounts = serializers.IntegerField(source="accounts.count", read_only=True)

    def validate_kind(self, value: str) -> str:
        if self.instance is not None:
            raise serializers.ValidationError("a kind presets a new group's permissions; change them with "
                                              "permissions")
        return value

    def validate_path(self, value: str) -> str:
        if self.instance is not None and value != self.instance.path:
            raise serializers.ValidationError("a path never changes: it is where the group sits in the tree")
        return value


class OwnerGroupViewSet(AuthorizedViewSetMixin, viewsets.ModelViewSet):
    """Owner-groups in the person's authority: list (``?search=``, paginated), create (its path inside one's
    authority, below an existing group: else 403 / 400 naming ``path``; its permissions the preset of ``kind``,
    class by default, or the ``permissions`` given), get, change (name, description,
    permissions: all of them, a type left out loses its permission), delete (409 while accounts, images, instances,
    hosts or sub-groups use it)."""

    queryset = OwnerGroup.objects.prefetch_related("permissions")
    serializer_class = OwnerGroupSerializer
    resource_type = ResourceTypeChoices.OWNERGROUP
    lookup_field = "path"
    lookup_value_regex = OWNER_PATH_RE.pattern.removeprefix("^").removesuffix("$")
    filter_backends = [SearchFilter, filters.OrderingFilter]
    search_fields = ["name", "path", "description"]
    ordering_fields = ["path", "name"]

    def perform_create(self, serializer):
        serializer.instance = create_owner_group(actor(self.request), **serializer.validated_data)

    def perform_update(self, serializer):
        values = dict(serializer.validated_data)
        values.pop("path", None)
        serializer.instance = change_owner_group(serializer.instance, **values)

    def perform_destroy(self, instance):
        delete_owner_group(instance)

    def handle_exception(self, exc):
        if isinstance(exc, OwnerGroupRefused):
            if exc.status == 400 and exc.field:
                return Response({exc.field: [str(exc)]}, status=exc.status)
            return Response({"detail": str(exc)}, status=exc.status)
        return super().handle_exception(exc)
