"""Serializers of the storage controller's API: what callers send (checked by the services, which name the field at
fault) and the shape of what they get."""

from __future__ import annotations

from rest_framework import serializers

from sc.models import Snapshot, Volume


class VolumeCreateSerializer(serializers.Serializer):
    """``size`` in bytes (a whole number of MiB); ``snapshot_id`` to copy a snapshot (``size`` then at least the
    snapshot's, its size if left out), or ``image_id``, ``version`` and ``sha256`` to make it from an image version
    in walrus; ``volume_id`` as the CLC recorded it (a new id if left out)."""

    volume_id = serializers.CharField(required=False, max_length=300)
    size = serializers.IntegerField(required=False)
    snapshot_id = serializers.CharField(required=False, max_length=300)
    image_id = serializers.CharField(required=False, max_length=300)
    version = serializers.IntegerField(required=False, min_value=1)
    sha256 = serializers.CharField(required=False, max_length=300)

    def validate(self, data: dict) -> dict:
        image = [name for name in ("image_id", "version", "sha256") if name in data]
        if image and "snapshot_id" in data:
            raise serializers.ValidationError({"snapshot_id": ["give a snapshot_id or an image, not both"]})
        for name in ("image_id", "version", "sha256"):
            if image and name not in data:
                raise serializers.ValidationError({name: ["is required to make a volume from an image"]})
        return data


class VolumeSerializer(serializers.ModelSerializer):
    exported_to = serializers.SerializerMethodField()
    snapshots = serializers.SlugRelatedField(many=True, read_only=True, slug_field="snapshot_id")

    class Meta:
        model = Volume
        fields = ("volume_id", "size", "state", "progress", "error", "source", "source_id", "exported_to", "snapshots",
                  "created", "updated")

    def get_exported_to(self, volume: Volume) -> str:
        """The node the volume is exported to, '' if none."""
        export = getattr(volume, "export", None)
        return export.node if export is not None else ""


class ExportRequestSerializer(serializers.Serializer):
    node = serializers.CharField(max_length=300)
    take_over = serializers.BooleanField(default=False, help_text="move an export to another node to this one")


class SnapshotCreateSerializer(serializers.Serializer):
    volume_id = serializers.CharField(max_length=300)
    snapshot_id = serializers.CharField(required=False, max_length=300)


class SnapshotSerializer(serializers.ModelSerializer):
    volume_id = serializers.CharField(source="volume.volume_id", read_only=True)

    class Meta:
        model = Snapshot
        fields = ("snapshot_id", "volume_id", "size", "created")


class RestoreSerializer(serializers.Serializer):
    snapshot_id = serializers.CharField(max_length=300)


class SpaceSerializer(serializers.Serializer):
    capacity = serializers.IntegerField(help_text="bytes")
    reserved = serializers.IntegerField(help_text="bytes")
    free = serializers.IntegerField(help_text="bytes")


class ShareUsageSerializer(serializers.Serializer):
    """A WebDAV home or owner-group share (``sc.services.shares.ShareUsage``): where it is below ``/sc/dav/``, whose
    it is, the bytes of its files and its quota (``sc.dav_quota_mb``, the same for every share)."""

    path = serializers.CharField(help_text="below /sc/dav/, e.g. home/alice or groups/edu.s1")
    kind = serializers.ChoiceField(choices=("home", "group"))
    owner = serializers.CharField(help_text="the home's user name or the share's owner-group path")
    used_bytes = serializers.IntegerField()
    quota_bytes = serializers.IntegerField()
