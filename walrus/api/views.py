"""API views of walrus: adapters that validate ids and parameters, call one store service and map its errors."""

from __future__ import annotations

import re

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from luhyaapi.drf import SignedRequestAuthentication, callers
from luhyaapi.ids import InvalidId, validate_id
from luhyaapi.openapi import number_parameter
from luhyaapi.pagination import BoundedLimitOffsetPagination
from luhyaapi.ranges import (
    RangeNotSatisfiable,
    file_response,
    set_file_headers,
    unsatisfiable_headers,
    wanted_range,
)
from walrus.api.authentication import IsSignedNodeOrStaffOrUploadToken, UploadTokenAuthentication
from walrus.api.cors import UploadCorsMixin
from walrus.api.serializers import (
    ImageVersionSerializer,
    StoredImageSerializer,
    StoredVersionSerializer,
    UploadCompleteSerializer,
    UploadSerializer,
    UploadStartSerializer,
)
from walrus.constants import MAX_PUT_BYTES, PUT_TOO_LARGE
from walrus.services.store import (
    StoreError,
    abandon_upload,
    complete_upload,
    delete_image,
    delete_version,
    find_version,
    get_image,
    get_upload,
    image_ids,
    list_images,
    open_version,
    start_upload,
    write_upload,
)

_DIGITS = re.compile(r"^[0-9]{1,19}$")


UPLOAD_ID = OpenApiParameter("upload_id", str, OpenApiParameter.PATH, pattern=r"^upl-[0-9a-f]{8}$")
IMAGE_ID = OpenApiParameter("image_id", str, OpenApiParameter.PATH, pattern=r"^img-[0-9a-f]{8}$")
VERSION = OpenApiParameter("version", str, OpenApiParameter.PATH, pattern=r"^([1-9][0-9]{0,18}|current)$",
                           description="a version number, or current")
FILE = OpenApiResponse(OpenApiTypes.BINARY, description="the file, or the part that Range asked for (206)")


def _checked_id(value: str, kind: str, field: str) -> str:
    try:
        return validate_id(value, kind)
    except InvalidId as exc:
        raise exceptions.ValidationError({field: [str(exc)]}) from None


def _checked_number(value: str | None, field: str, *, low: int = 0) -> int:
    if value is None or not _DIGITS.match(value) or int(value) < low:
        raise exceptions.ValidationError({field: [f"{value!r} is not a whole number from {low}"]})
    return int(value)


def _checked_version(value: str, *, allow_current: bool) -> int | None:
    """A version number from the path, or None for ``current`` where that is allowed."""
    if allow_current and value == "current":
        return None
    return _checked_number(value, "version", low=1)


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class StoreView(APIView):
    """Answers the store's refusals with their status and a JSON body (``detail`` and, for writers, ``offset``).
    Called signed by the CLC (images, uploads) and the CCs (their cluster caches, their nodes' uploads), or by a
    logged-in administrator."""

    signed_callers = callers("clc", "cc")

    def handle_exception(self, exc):
        if isinstance(exc, StoreError):
            return Response({"detail": str(exc), **exc.extra}, status=exc.status)
        return super().handle_exception(exc)


class AnyAccept(BaseContentNegotiation):
    """Data calls answer with bytes whatever the client says it accepts; only their errors are rendered (JSON)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class UploadListView(UploadCorsMixin, StoreView):
    """``POST uploads/`` ``{"image_id", "size", "sha256"?}``: start an upload of a new version of an image."""

    @extend_schema(request=UploadStartSerializer, responses={201: UploadSerializer})
    def post(self, request):
        upload = start_upload(**_valid(UploadStartSerializer, request.data))
        return Response(UploadSerializer(upload).data, status=status.HTTP_201_CREATED)


class UploadDetailView(UploadCorsMixin, StoreView):
    """``GET uploads/<upload_id>/``: where to resume; ``DELETE``: abandon the upload and its partial file."""

    @extend_schema(parameters=[UPLOAD_ID], responses=UploadSerializer)
    def get(self, request, upload_id: str):
        return Response(UploadSerializer(get_upload(_checked_id(upload_id, "upload", "upload_id"))).data)

    @extend_schema(parameters=[UPLOAD_ID], responses={204: None})
    def delete(self, request, upload_id: str):
        abandon_upload(_checked_id(upload_id, "upload", "upload_id"))
        return Response(status=status.HTTP_204_NO_CONTENT)


class UploadDataView(UploadCorsMixin, StoreView):
    """``PUT uploads/<upload_id>/data?offset=N``: the raw body, streamed to the partial file in chunks; a body over
    ``MAX_PUT_BYTES`` is refused (413) by its ``Content-Length``, before any of it is read.

    The body is read from the WSGI stream (``request._request``), never through ``request.body`` or
    ``request.data``: an image does not fit in memory. There are no parsers, so an accidental ``request.data`` fails
    instead of reading the body, and ``unsigned_payload`` lets signed callers sign ``UNSIGNED-PAYLOAD`` so the
    signature check does not read it either."""

    unsigned_payload = True
    parser_classes: list = []
    content_negotiation_class = AnyAccept
    authentication_classes = [UploadTokenAuthentication, SignedRequestAuthentication, SessionAuthentication]
    permission_classes = [IsSignedNodeOrStaffOrUploadToken]

    @extend_schema(parameters=[UPLOAD_ID, number_parameter("offset", 0, required=True,
                                                           description="where in the file this piece starts")],
                   request={"application/octet-stream": OpenApiTypes.BINARY},
                   responses={200: inline_serializer("UploadOffset", {"offset": serializers.IntegerField()})})
    def put(self, request, upload_id: str):
        upload_id = _checked_id(upload_id, "upload", "upload_id")
        offset = _checked_number(request.query_params.get("offset"), "offset")
        length = request.META.get("CONTENT_LENGTH") or ""
        if not length:
            return Response({"detail": "a Content-Length header is required"},
                            status=status.HTTP_411_LENGTH_REQUIRED)
        length = _checked_number(length, "Content-Length")
        if length > MAX_PUT_BYTES:
            return Response({"Content-Length": [PUT_TOO_LARGE]}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        new_offset = write_upload(upload_id, offset, length, request._request.read)
        return Response({"offset": new_offset})


class UploadCompleteView(UploadCorsMixin, StoreView):
    """``POST uploads/<upload_id>/complete/`` ``{"sha256"?}``: store the upload as the image's next, current
    version (201); a repeated call answers with the same version (200)."""

    @extend_schema(parameters=[UPLOAD_ID], request=UploadCompleteSerializer,
                   responses={200: StoredVersionSerializer, 201: StoredVersionSerializer})
    def post(self, request, upload_id: str):
        upload_id = _checked_id(upload_id, "upload", "upload_id")
        stored, made = complete_upload(upload_id, **_valid(UploadCompleteSerializer, request.data or {}))
        return Response(StoredVersionSerializer(stored).data,
                        status=status.HTTP_201_CREATED if made else status.HTTP_200_OK)


class ImageListView(StoreView, GenericAPIView):
    """``GET images/``: the images with their versions (paginated with ``limit``/``offset``)."""

    pagination_class = BoundedLimitOffsetPagination
    serializer_class = StoredImageSerializer

    @extend_schema(operation_id="images_list", responses=StoredImageSerializer(many=True))
    def get(self, request):
        page = self.paginate_queryset(image_ids())
        return self.get_paginated_response(StoredImageSerializer(list_images(page), many=True).data)


class ImageDetailView(StoreView):
    """``GET images/<image_id>/``: the image's versions and which is current; ``DELETE``: every version."""

    @extend_schema(parameters=[IMAGE_ID], responses=StoredImageSerializer)
    def get(self, request, image_id: str):
        return Response(StoredImageSerializer(get_image(_checked_id(image_id, "image", "image_id"))).data)

    @extend_schema(parameters=[IMAGE_ID], responses={204: None})
    def delete(self, request, image_id: str):
        delete_image(_checked_id(image_id, "image", "image_id"))
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionDetailView(StoreView):
    """``GET images/<image_id>/versions/<n or current>/``: one version; ``DELETE .../<n>/``: delete it (the newest
    remaining version becomes current if it was)."""

    @extend_schema(parameters=[IMAGE_ID, VERSION], responses=ImageVersionSerializer)
    def get(self, request, image_id: str, version: str):
        image_id = _checked_id(image_id, "image", "image_id")
        return Response(ImageVersionSerializer(find_version(image_id, _checked_version(version,
                                                                                        allow_current=True))).data)

    @extend_schema(parameters=[IMAGE_ID, OpenApiParameter("version", {"type": "integer", "minimum": 1},
                                                          OpenApiParameter.PATH)],
                   responses={204: None})
    def delete(self, request, image_id: str, version: str):
        image_id = _checked_id(image_id, "image", "image_id")
        delete_version(image_id, _checked_version(version, allow_current=False))
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionDataView(StoreView):
    """``GET``/``HEAD images/<image_id>/versions/<n or current>/data``: the file, handed to the web server to send
    straight from the disk (its ``wsgi.file_wrapper``), with a single ``Range`` (206, or 416 outside the file),
    ``ETag: "<sha256>"`` and ``X-Educloud-Sha256``. An ``If-Range`` that is not this file's ETag gets the whole
    file, so a resumed download never mixes two files."""

    content_negotiation_class = AnyAccept
    # Storage controllers read versions too: they make volumes from them (sc/services/images.py).
    signed_callers = callers("clc", "cc", "sc")

    @extend_schema(parameters=[IMAGE_ID, VERSION], responses={(200, "application/octet-stream"): FILE,
                                                              (206, "application/octet-stream"): FILE})
    def get(self, request, image_id: str, version: str):
        image_id = _checked_id(image_id, "image", "image_id")
        stored = find_version(image_id, _checked_version(version, allow_current=True))
        try:
            byte_range = wanted_range(request.headers, stored.size, stored.sha256)
        except RangeNotSatisfiable as exc:
            return Response({"detail": f"range not satisfiable: {exc}"},
                            status=status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
                            headers=unsatisfiable_headers(stored.size, stored.sha256))
        first, last = byte_range or (0, stored.size - 1)
        if request.method == "HEAD":
            response = HttpResponse(content_type="application/octet-stream")
            set_file_headers(response, size=stored.size, sha256=stored.sha256, first=first, last=last,
                             partial=byte_range is not None)
        else:
            response = file_response(open_version(stored, first, last), size=stored.size, sha256=stored.sha256,
                                     partial=byte_range is not None)
        response["Content-Disposition"] = f'attachment; filename="{stored.image_id}-{stored.version}.{stored.format}"'
        return response
