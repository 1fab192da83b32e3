"""Serializers of walrus's API: validation of what callers send, shape of what they get."""

from __future__ import annotations

from rest_framework import serializers

from luhyaapi.ids import InvalidId, validate_id
from walrus.constants import MAX_IMAGE_BYTES
from walrus.models import ImageVersion, Upload

SHA256_PATTERN = r"^[0-9a-f]{64}$"


class UploadStartSerializer(serializers.Serializer):
    image_id = serializers.CharField(max_length=40)
    size = serializers.IntegerField(min_value=1, max_value=MAX_IMAGE_BYTES)
    sha256 = serializers.RegexField(SHA256_PATTERN, required=False, allow_blank=True,
                                    error_messages={"invalid": "must be 64 lower-case hex digits"})

    def validate_image_id(self, value: str) -> str:
        try:
            return validate_id(value, "image")
        except InvalidId as exc:
            raise serializers.ValidationError(str(exc)) from None


class UploadCompleteSerializer(serializers.Serializer):
    sha256 = serializers.RegexField(SHA256_PATTERN, required=False, allow_blank=True,
                                    error_messages={"invalid": "must be 64 lower-case hex digits"})


class UploadSerializer(serializers.ModelSerializer):
    class Meta:
        model = Upload
        fields = ("upload_id", "image_id", "size", "offset", "state")


class ImageVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImageVersion
        fields = ("version", "size", "sha256", "format", "created", "current")


class StoredVersionSerializer(serializers.ModelSerializer):
    """A version as the answer to ``complete/``: which image and version the upload became."""

    class Meta:
        model = ImageVersion
        fields = ("image_id", "version", "size", "sha256", "format")


class StoredImageSerializer(serializers.Serializer):
    image_id = serializers.CharField()
    current = serializers.IntegerField(allow_null=True)
    versions = ImageVersionSerializer(many=True)
