"""API of the cloud controller for people's accounts (by user name): list, create, get, change, delete, and
``password/`` to set or generate a password; adapters over ``clc.services.accounts``."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import exceptions, filters, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from clc.api.authz import AuthorizedViewSetMixin, actor
from clc.services.accounts import (
    AccountRefused,
    change_account,
    create_account,
    delete_account,
    find_accounts,
    reset_password,
)
from luhyaapi.filters import SearchFilter
from luhyaapi.openapi import choice_parameter
from luhyadb.choices import AccountRoleChoices, ResourceTypeChoices
from luhyadb.models import OwnerGroup

PERSON_FIELDS = ("first_name", "last_name", "email", "is_active")


class AccountSerializer(serializers.Serializer):
    """An account with its person: user name (never changes), names, e-mail, active, role, owner-group (path);
    ``password`` is accepted on create and never shown (without one, one is generated and returned once)."""

    username = serializers.CharField(source="user.username", max_length=150)
    first_name = serializers.CharField(source="user.first_name", max_length=150, required=False, allow_blank=True)
    last_name = serializers.CharField(source="user.last_name", max_length=150, required=False, allow_blank=True)
    email = serializers.EmailField(source="user.email", required=False, allow_blank=True)
    is_active = serializers.BooleanField(source="user.is_active", required=False)
    role = serializers.ChoiceField(choices=AccountRoleChoices.choices)
    owner_group = serializers.SlugRelatedField(slug_field="path", queryset=OwnerGroup.objects.all())
    password = serializers.CharField(write_only=True, required=False, allow_blank=True, trim_whitespace=False,
                                     style={"input_type": "password"})
    last_login = serializers.DateTimeField(source="user.last_login", read_only=True, allow_null=True)
    date_joined = serializers.DateTimeField(source="user.date_joined", read_only=True)

    def validate_username(self, value: str) -> str:
        if self.instance is not None and value != self.instance.user.username:
            raise serializers.ValidationError("a user name never changes; create another account instead")
        return value

    def validate_password(self, value: str) -> str:
        if self.instance is not None:
            raise serializers.ValidationError(f"set it with POST .../{self.instance.user.username}/password/")
        return value

    def values(self) -> dict:
        """The validated values as the service takes them (the person's fields flattened)."""
        data = dict(self.validated_data)
        return data.pop("user", {}) | data


class PasswordSerializer(serializers.Serializer):
    password = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, default="")


def _refusal(exc: AccountRefused) -> Response:
    if exc.status == 400 and exc.field:
        return Response({exc.field: [str(exc)]}, status=exc.status)
    return Response({"detail": str(exc)}, status=exc.status)


GENERATED_PASSWORD = inline_serializer("GeneratedPassword", {
    "username": serializers.CharField(), "generated_password": serializers.CharField()})


@extend_schema_view(list=extend_schema(parameters=[
    choice_parameter("role", AccountRoleChoices.values),
    OpenApiParameter("owner_group", str, description="only accounts of this owner-group (path) and below")]))
class AccountViewSet(AuthorizedViewSetMixin, viewsets.ModelViewSet):
    """Accounts in the person's authority: list (``?search=``, ``?role=``, ``?owner_group=<path>``, paginated),
    create (201; ``generated_password`` once when none was given), get, change, delete, and ``password/`` (POST
    ``{"password": ...}``: 204; without one, 200 with the ``generated_password``). A bad value is a 400 naming the
    field; a role above one's own, an owner-group outside one's authority, or demoting, moving, deactivating or
    deleting oneself is a 403."""

    serializer_class = AccountSerializer
    resource_type = ResourceTypeChoices.ACCOUNT
    authz_actions = {"password": "write"}
    lookup_field = "user__username"
    lookup_url_kwarg = "username"
    lookup_value_regex = r"[\w.@+-]+"
    filter_backends = [SearchFilter, filters.OrderingFilter]
    search_fields = ["user__username", "user__first_name", "user__last_name", "user__email"]
    ordering_fields = ["user__username", "role", "owner_group__path", "user__last_login"]

    def get_queryset(self):
        role = self.request.query_params.get("role", "")
        if role and role not in AccountRoleChoices.values:
            raise exceptions.ValidationError({"role": [f"must be one of {', '.join(AccountRoleChoices.values)}"]})
        return find_accounts(role=role, group=self.request.query_params.get("owner_group", ""))

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.values()
        account, generated = create_account(actor(request), username=values.pop("username"), **values)
        answer = AccountSerializer(account).data
        if generated:
            answer["generated_password"] = generated
        return Response(answer, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        values = serializer.values()
        values.pop("username", None)
        serializer.instance = change_account(actor(self.request), serializer.instance, **values)

    def perform_destroy(self, instance):
        delete_account(actor(self.request), instance)

    def handle_exception(self, exc):
        if isinstance(exc, AccountRefused):
            return _refusal(exc)
        return super().handle_exception(exc)

    @extend_schema(request=PasswordSerializer, responses={200: GENERATED_PASSWORD, 204: None})
    @action(detail=True, methods=["post"])
    def password(self, request, username: str):
        body = PasswordSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        generated = reset_password(actor(request), self.get_object(), body.validated_data["password"])
        if generated:
            return Response({"username": username, "generated_password": generated})
        return Response(status=status.HTTP_204_NO_CONTENT)
