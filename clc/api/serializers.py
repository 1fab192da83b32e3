"""Serializers of the cloud controller's API: validation of what people send, shape of what they get."""

from __future__ import annotations

from rest_framework import serializers

from luhyaapi.validators import NAME_RE, InvalidValue, validate_display_name
from luhyadb.models import Image, ImageVersion, OwnerGroup


def _checked(check, value: str, field: str) -> str:
    try:
        return check(value, field)
    except InvalidValue as exc:
        raise serializers.ValidationError(exc.message) from None


class ImageVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImageVersion
        fields = ("number", "label", "size_bytes", "sha256", "format", "created")


class ImageSerializer(serializers.ModelSerializer):
    """An image's properties (the notes' list) and its versions; files are uploaded separately."""

    owner_group = serializers.SlugRelatedField(slug_field="path", queryset=OwnerGroup.objects.all())
    versions = ImageVersionSerializer(many=True, read_only=True)

    class Meta:
        model = Image
        fields = ("image_id", "name", "os_type", "arch", "usage", "owner_group", "description", "version",
                  "pub_date", "size_bytes", "current_version", "versions")
        read_only_fields = ("image_id", "version", "pub_date", "size_bytes", "current_version", "versions")

    def validate_name(self, value: str) -> str:
        return _checked(validate_display_name, value, "name")

    def validate_description(self, value: str) -> str:
        if "\x00" in value:
            raise serializers.ValidationError("may not contain NUL characters")
        return value


class UploadStartSerializer(serializers.Serializer):
    size = serializers.IntegerField(min_value=1)
    sha256 = serializers.RegexField(r"^[0-9a-f]{64}$", required=False, allow_blank=True)


class UploadCompleteSerializer(serializers.Serializer):
    upload_id = serializers.RegexField(r"^upl-[0-9a-f]{8}$")


class PrepareSerializer(serializers.Serializer):
    node = serializers.RegexField(NAME_RE.pattern)
    version = serializers.IntegerField(min_value=1, required=False)
