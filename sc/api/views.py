"""API views of the storage controller: adapters that check the input's shape, call one service and map its
refusals (``VolumeError``) to their status with a JSON body naming the field at fault, if one is."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from luhyaapi.drf import IsSignedNode, callers
from luhyaapi.pagination import BoundedLimitOffsetPagination
from sc.api.serializers import (
    ExportRequestSerializer,
    RestoreSerializer,
    ShareUsageSerializer,
    SnapshotCreateSerializer,
    SnapshotSerializer,
    SpaceSerializer,
    VolumeCreateSerializer,
    VolumeSerializer,
)
from sc.models import Snapshot, Volume
from sc.services.images import create_volume_from_image
from sc.services.shares import share_usage
from sc.services.snapshots import create_snapshot, delete_snapshot, restore_volume
from sc.services.store import VolumeError, checked_id, create_volume, delete_volume, get_snapshot, get_volume, space
from sc.services.targets import export_volume, unexport_volume

VOLUME_ID = OpenApiParameter("volume_id", str, OpenApiParameter.PATH, pattern=r"^vol-[0-9a-f]{8}$")
SNAPSHOT_ID = OpenApiParameter("snapshot_id", str, OpenApiParameter.PATH, pattern=r"^snp-[0-9a-f]{8}$")
TARGET = OpenApiResponse(OpenApiTypes.OBJECT, description="luhyaapi.volumes.VolumeTarget: portal, target, LUN, CHAP "
                                                          "user and secret, the initiator name it accepts")


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _volume_id(value: str) -> str:
    return checked_id(value, "volume", "volume_id")


def _snapshot_id(value: str) -> str:
    return checked_id(value, "snapshot", "snapshot_id")


class StoreView(APIView):
    """Called signed by the CLC (which keeps the cloud's volume records), or by a logged-in administrator; answers
    the store's refusals with their status, ``detail`` and, for bad input, the field."""

    signed_callers = callers("clc")

    def handle_exception(self, exc):
        if isinstance(exc, VolumeError):
            body = {"detail": str(exc)} | ({exc.field: [str(exc)]} if exc.field else {})
            return Response(body, status=exc.status)
        return super().handle_exception(exc)


class SpaceView(StoreView):
    """``GET space/``: the volume store's capacity, what volumes and snapshots reserve, and what is free (bytes)."""

    @extend_schema(responses=SpaceSerializer)
    def get(self, request):
        return Response(SpaceSerializer(space()).data)


class VolumeListView(StoreView, GenericAPIView):
    """``GET volumes/``: the SC's volumes (paginated); ``POST`` ``{"size"}`` or ``{"snapshot_id", "size"?}``, with
    ``volume_id`` as the CLC chose it: make a volume (201); ``{"image_id", "version", "sha256", "size"}``: start
    making one from an image version (202, ``creating`` with its ``progress`` until ``available`` or ``failed``)."""

    pagination_class = BoundedLimitOffsetPagination
    serializer_class = VolumeSerializer
    queryset = Volume.objects.select_related("export").prefetch_related("snapshots")

    @extend_schema(responses=VolumeSerializer(many=True))
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(VolumeSerializer(page, many=True).data)

    @extend_schema(request=VolumeCreateSerializer, responses={201: VolumeSerializer, 202: VolumeSerializer})
    def post(self, request):
        data = _valid(VolumeCreateSerializer, request.data)
        if "image_id" in data:
            volume = create_volume_from_image(**data)
            return Response(VolumeSerializer(get_volume(volume.volume_id)).data, status=status.HTTP_202_ACCEPTED)
        volume = create_volume(**data)
        return Response(VolumeSerializer(get_volume(volume.volume_id)).data, status=status.HTTP_201_CREATED)


class VolumeDetailView(StoreView):
    """``GET volumes/<volume_id>/``; ``DELETE``: the volume and its file (409 while exported or with snapshots)."""

    @extend_schema(parameters=[VOLUME_ID], responses=VolumeSerializer)
    def get(self, request, volume_id: str):
        return Response(VolumeSerializer(get_volume(_volume_id(volume_id))).data)

    @extend_schema(parameters=[VOLUME_ID], responses={204: None})
    def delete(self, request, volume_id: str):
        delete_volume(_volume_id(volume_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class VolumeExportView(StoreView):
    """``POST volumes/<volume_id>/export/`` ``{"node"}``: export the volume to that node's initiator only and answer
    how it logs in (``VolumeTarget``, its CHAP secret included: for the signed CLC only, never a person); the same
    answer again while it stays exported there. ``DELETE``: end the export (204, also when there was none)."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("clc", "cc")  # the CC exports a volume to the node of its instance

    @extend_schema(parameters=[VOLUME_ID], request=ExportRequestSerializer, responses={200: TARGET})
    def post(self, request, volume_id: str):
        volume_id = _volume_id(volume_id)
        target = export_volume(volume_id, **_valid(ExportRequestSerializer, request.data))
        return Response(target.model_dump(mode="json"))

    @extend_schema(parameters=[VOLUME_ID], responses={204: None})
    def delete(self, request, volume_id: str):
        unexport_volume(_volume_id(volume_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class VolumeRestoreView(StoreView):
    """``POST volumes/<volume_id>/restore/`` ``{"snapshot_id"}``: the volume's content becomes the snapshot's
    (409 while exported)."""

    @extend_schema(parameters=[VOLUME_ID], request=RestoreSerializer, responses=VolumeSerializer)
    def post(self, request, volume_id: str):
        volume_id = _volume_id(volume_id)
        restore_volume(volume_id, **_valid(RestoreSerializer, request.data))
        return Response(VolumeSerializer(get_volume(volume_id)).data)


class SnapshotListView(StoreView, GenericAPIView):
    """``GET snapshots/?volume_id=``: the snapshots (of one volume); ``POST`` ``{"volume_id", "snapshot_id"?}``:
    take one (201)."""

    pagination_class = BoundedLimitOffsetPagination
    serializer_class = SnapshotSerializer

    @extend_schema(parameters=[OpenApiParameter("volume_id", str, OpenApiParameter.QUERY,
                                                pattern=r"^vol-[0-9a-f]{8}$")],
                   responses=SnapshotSerializer(many=True))
    def get(self, request):
        snapshots = Snapshot.objects.select_related("volume")
        if "volume_id" in request.query_params:
            snapshots = snapshots.filter(volume__volume_id=_volume_id(request.query_params["volume_id"]))
        page = self.paginate_queryset(snapshots)
        return self.get_paginated_response(SnapshotSerializer(page, many=True).data)

    @extend_schema(request=SnapshotCreateSerializer, responses={201: SnapshotSerializer})
    def post(self, request):
        data = _valid(SnapshotCreateSerializer, request.data)
        snapshot = create_snapshot(_volume_id(data["volume_id"]), data.get("snapshot_id"))
        return Response(SnapshotSerializer(snapshot).data, status=status.HTTP_201_CREATED)


class SnapshotDetailView(StoreView):
    """``GET snapshots/<snapshot_id>/``; ``DELETE``: the snapshot and its file."""

    @extend_schema(parameters=[SNAPSHOT_ID], responses=SnapshotSerializer)
    def get(self, request, snapshot_id: str):
        return Response(SnapshotSerializer(get_snapshot(_snapshot_id(snapshot_id))).data)

    @extend_schema(parameters=[SNAPSHOT_ID], responses={204: None})
    def delete(self, request, snapshot_id: str):
        delete_snapshot(_snapshot_id(snapshot_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ShareUsageListView(StoreView, GenericAPIView):
    """``GET shares/``: every WebDAV home and owner-group share folder of this SC (paginated), with the bytes it holds
    and its quota; each page counts the files of its own shares only."""

    pagination_class = BoundedLimitOffsetPagination
    serializer_class = ShareUsageSerializer

    @extend_schema(responses=ShareUsageSerializer(many=True))
    def get(self, request):
        page = self.paginate_queryset(share_usage())
        return self.get_paginated_response(ShareUsageSerializer(page, many=True).data)
