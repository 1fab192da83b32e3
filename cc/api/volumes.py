"""API views of the cluster controller for the CLC's volume attachments (issue 16): adapters over
``cc.services.instances.attach_instance_volume`` / ``detach_instance_volume``."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from cc.services.instances import InstanceRefused, attach_instance_volume, detach_instance_volume
from cc.services.volumes import ExportRefused
from luhyaapi.api import validated
from luhyaapi.config import celery_broker_url
from luhyaapi.drf import IsSignedNode, callers
from luhyaapi.ids import InvalidId, validate_id
from luhyaapi.validators import InvalidValue
from luhyaapi.volumes import VOLUME_TASK_PATTERN, VolumeAttachRequest, VolumeDetachRequest

INSTANCE_ID = OpenApiParameter("insid", str, OpenApiParameter.PATH, pattern=r"^ins-[0-9a-f]{8}$")
VOLUME_ID = OpenApiParameter("volume_id", str, OpenApiParameter.PATH, pattern=r"^vol-[0-9a-f]{8}$")
QUEUED = inline_serializer("VolumeOperation", {
    "insid": serializers.CharField(), "volume_id": serializers.CharField(), "node": serializers.CharField(),
    "tid": serializers.RegexField(VOLUME_TASK_PATTERN)})


def _checked_id(value: str, kind: str, field: str) -> str:
    """``value`` if it is an id of ``kind``; else a 400 naming ``field``."""
    try:
        return validate_id(value, kind)
    except InvalidId as exc:
        raise InvalidValue(field, str(exc)) from None


def _queued(operation, insid: str, volume) -> Response:
    try:
        record, tid = operation(celery_broker_url(settings.EDUCLOUD), insid, volume)
    except InstanceRefused as exc:
        return Response({"detail": str(exc)}, status=exc.status)
    except ExportRefused as exc:
        return Response({"detail": str(exc)} | ({exc.field: [str(exc)]} if exc.field else {}), status=exc.status)
    return Response({"insid": insid, "volume_id": volume.volume_id, "node": record.node, "tid": tid},
                    status=status.HTTP_202_ACCEPTED)


class InstanceVolumesView(APIView):
    """``POST instances/<insid>/volumes/`` (signed, from the CLC; ``VolumeAttachRequest``): export the volume to the
    node running the instance and hot-plug it there; the node reports on the answer's ``tid``. 202; 404 for an
    instance this cluster did not place, 409 for one that does not run (nothing is exported then), 400 naming
    ``sc`` for an SC this cluster does not know, the SC's 404/409 with its words, 503 when it cannot export."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("clc")

    @extend_schema(parameters=[INSTANCE_ID], request=VolumeAttachRequest, responses={202: QUEUED})
    def post(self, request, insid: str):
        insid = _checked_id(insid, "instance", "insid")
        return _queued(attach_instance_volume, insid, validated(VolumeAttachRequest, request.data).volume)


class InstanceVolumeDetachView(APIView):
    """``POST instances/<insid>/volumes/<volume_id>/detach/`` (signed, from the CLC; ``VolumeDetachRequest``, its
    volume the one of the URL): unplug it from the running instance; once the node reports it detached the export
    ends at the SC. 202; 404 and 409 as the attach; 400 naming ``volume_id`` when the body names another volume."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("clc")

    @extend_schema(parameters=[INSTANCE_ID, VOLUME_ID], request=VolumeDetachRequest, responses={202: QUEUED})
    def post(self, request, insid: str, volume_id: str):
        insid = _checked_id(insid, "instance", "insid")
        volume_id = _checked_id(volume_id, "volume", "volume_id")
        volume = validated(VolumeDetachRequest, request.data).volume
        if volume.volume_id != volume_id:
            raise InvalidValue("volume_id", f"the body names {volume.volume_id}, the URL {volume_id}")
        return _queued(detach_instance_volume, insid, volume)
