"""The API of desktop pools and their timetables: thin adapters over ``clc.services.pools`` and
``clc.services.lessons``; who may do what is the rule on type ``pool`` (``clc.services.authz``)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, filters, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from clc.api.authz import AuthorizedViewSetMixin, actor, require, require_create, require_owner_change
from clc.api.serializers import DesktopPoolSerializer, InstanceSerializer, LessonSerializer
from clc.services import authz
from clc.services.instances import InstanceError
from clc.services.lessons import change_lesson, create_lesson, delete_lesson
from clc.services.pools import PoolError, change_pool, claim_desktop, create_pool, delete_pool
from luhyaapi.filters import SearchFilter
from luhyaapi.ids import InvalidId, validate_id
from luhyadb.choices import ResourceTypeChoices
from luhyadb.models import DesktopPool, Lesson


def _pool_error(exc: PoolError) -> Response:
    if exc.field:
        return Response({exc.field: [str(exc)]}, status=exc.status)
    return Response({"detail": str(exc)}, status=exc.status)


def _validated_id(value: str, kind: str, field: str) -> None:
    try:
        validate_id(value, kind)
    except InvalidId as exc:
        raise exceptions.ValidationError({field: [str(exc)]}) from None


class DesktopPoolViewSet(AuthorizedViewSetMixin, viewsets.ModelViewSet):
    """Desktop pools: list (``?search=``, paginated), make, get, change, delete (409 while a desktop of it runs),
    ``desktops/`` (GET: its desktops, who holds each and their state) and ``claim/`` (POST, for who may execute the
    pool: a desktop of it for the caller, started if it was not; 202 with the desktop, 409 when all are in use)."""

    queryset = DesktopPool.objects.select_related("image", "vm_type", "owner_group")
    serializer_class = DesktopPoolSerializer
    resource_type = ResourceTypeChoices.POOL
    authz_actions = {"claim": "execute", "desktops": "read"}
    lookup_field = "pool_id"
    lookup_value_regex = "[^/]+"
    filter_backends = [SearchFilter, filters.OrderingFilter]
    search_fields = ["name", "pool_id", "image__name"]
    ordering_fields = ["name", "created"]

    def get_object(self):
        _validated_id(self.kwargs["pool_id"], "pool", "pool_id")
        return super().get_object()

    def perform_create(self, serializer):
        data = serializer.validated_data
        require_create(self.request, self.resource_type, data["owner_group"].path)
        require(self.request, "read", data["image"])
        serializer.instance = create_pool(**data)

    def perform_update(self, serializer):
        require_owner_change(self.request, serializer, self.resource_type)
        if "image" in serializer.validated_data:
            require(self.request, "read", serializer.validated_data["image"])
        serializer.instance = change_pool(serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        delete_pool(instance)

    def handle_exception(self, exc):
        if isinstance(exc, PoolError):
            return _pool_error(exc)
        if isinstance(exc, InstanceError):
            return Response({"detail": str(exc)}, status=exc.status)
        return super().handle_exception(exc)

    @extend_schema(responses=InstanceSerializer(many=True))
    @action(detail=True, methods=["get"])
    def desktops(self, request, pool_id: str):
        """The pool's desktops the caller may read (a student: theirs)."""
        desktops = authz.readable(actor(request), self.get_object().desktops.select_related(
            "image", "vm_type", "owner_group", "assigned_to"))
        return Response(InstanceSerializer(desktops, many=True).data)

    @extend_schema(request=None, responses={202: InstanceSerializer})
    @action(detail=True, methods=["post"])
    def claim(self, request, pool_id: str):
        claim = claim_desktop(actor(request), self.get_object(), request.user)
        body = InstanceSerializer(claim.desktop).data
        body["detail"] = claim.desktop.message if claim.desktop.placing else ""
        return Response(body, status=status.HTTP_202_ACCEPTED)


class LessonViewSet(AuthorizedViewSetMixin, viewsets.ModelViewSet):
    """Lessons of the pools' timetables (``?pool=<pool_id>``): list, make, get, change, delete. Lessons of one pool
    never overlap on a weekday (400 naming ``starts``)."""

    queryset = Lesson.objects.select_related("pool", "pool__owner_group")
    serializer_class = LessonSerializer
    resource_type = ResourceTypeChoices.POOL
    # A lesson is a change to its pool's timetable: making or deleting one is writing the pool.
    authz_actions = {"create": "write", "destroy": "write"}
    lookup_field = "lesson_id"
    lookup_value_regex = "[^/]+"
    filter_backends = [filters.OrderingFilter]
    ordering_fields = ["starts", "name"]

    def get_queryset(self):
        queryset = super().get_queryset()
        pool = self.request.query_params.get("pool")
        if pool:
            _validated_id(pool, "pool", "pool")
            queryset = queryset.filter(pool__pool_id=pool)
        return queryset

    def get_object(self):
        _validated_id(self.kwargs["lesson_id"], "lesson", "lesson_id")
        return super().get_object()

    def perform_create(self, serializer):
        pool = serializer.validated_data["pool"]
        require(self.request, "write", pool)
        serializer.instance = create_lesson(**serializer.validated_data)

    def perform_update(self, serializer):
        require(self.request, "write", serializer.validated_data.get("pool", serializer.instance.pool))
        serializer.instance = change_lesson(serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        delete_lesson(instance)

    def handle_exception(self, exc):
        if isinstance(exc, PoolError):
            return _pool_error(exc)
        return super().handle_exception(exc)
