"""The API's adapters to ``clc.services.authz``: a permission class, a list filter and helpers for plain views, so
that every CLC endpoint asks the one rule. People go through the rule; a signed call of one of the cloud's hosts is
let through only where the view takes the sender's role (``signed_callers``, none by default: ``luhyaapi.drf``),
and then acts for the cloud, not for a person."""

from __future__ import annotations

from django.db.models import Model
from rest_framework import exceptions, permissions

from clc.services import authz
from luhyaapi.drf import caller_allowed, refusal_for, signed_node

# The action a viewset's action (DRF's ``view.action``) stands for; viewsets add theirs in ``authz_actions``.
ACTIONS = {"list": "read", "retrieve": "read", "create": "create", "update": "write", "partial_update": "write",
           "destroy": "delete"}


def actor(request) -> authz.Actor:
    """The person behind a request (computed once per request)."""
    django_request = getattr(request, "_request", request)
    cached = getattr(django_request, "_educloud_actor", None)
    if cached is None:
        cached = authz.actor_for(request.user)
        django_request._educloud_actor = cached
    return cached


def is_signed(request) -> bool:
    """A call signed by a host (the permission classes below have checked that the view takes its role)."""
    return signed_node(request) is not None


def signed_caller_may(request, view, permission) -> bool:
    """For the permission classes: a signed caller passes if the view takes its role; the refusal says which."""
    permission.message = refusal_for(view)
    return caller_allowed(request, view)


def as_api_error(denied: authz.Denied) -> exceptions.APIException:
    if denied.status == 404:
        return exceptions.NotFound(str(denied))
    return exceptions.PermissionDenied(str(denied))


def check_person(request) -> authz.Actor:
    """The request's person; 401/403 if nobody is logged in or the login has no account."""
    person = actor(request)
    if not person.is_person:
        if not request.user or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated("log in, or sign the call")
        raise exceptions.PermissionDenied("your login has no eduCloud account; ask an administrator")
    return person


def _ask(request, check, *args) -> None:
    """Signed calls pass; for a person, ``check`` (one of authz's ``require*``) turns a refusal into 403/404."""
    if is_signed(request):
        return
    try:
        check(check_person(request), *args)
    except authz.Denied as denied:
        raise as_api_error(denied) from None


def require(request, action: str, obj: Model) -> None:
    """For plain views: 404/403 unless the request may do the action to the record."""
    _ask(request, authz.require, action, obj)


def require_type(request, action: str, resource_type: str) -> None:
    _ask(request, authz.require_type, action, resource_type)


def require_create(request, resource_type: str, owner: str) -> None:
    _ask(request, authz.require_create, resource_type, owner)


def require_owner_change(request, serializer, resource_type: str) -> None:
    """Moving a record to another owner-group needs the right to create records of its type there; a PC moved to
    no owner-group is the root's."""
    if "owner_group" not in serializer.validated_data:
        return
    new_group = serializer.validated_data["owner_group"]
    if new_group != serializer.instance.owner_group:
        require_create(request, resource_type, new_group.path if new_group is not None else authz.ROOT_PATH)


def view_action(view) -> str:
    name = getattr(view, "action", None) or ""
    return {**ACTIONS, **getattr(view, "authz_actions", {})}.get(name, "read")


class SignedOrPerson(permissions.BasePermission):
    """For plain views that ask the rule themselves (``require``): signed roles, or a person with an account."""

    def has_permission(self, request, view) -> bool:
        if is_signed(request):
            return signed_caller_may(request, view, self)
        return bool(check_person(request))


class OwnerGroupRule(permissions.BasePermission):
    """Signed roles, or a person the rule allows: the view's action on its resource type, then on the record."""

    def has_permission(self, request, view) -> bool:
        if is_signed(request):
            return signed_caller_may(request, view, self)
        require_type(request, view_action(view), view.resource_type)
        return True

    def has_object_permission(self, request, view, obj) -> bool:
        require(request, view_action(view), obj)
        return True


class AuthorizedViewSetMixin:
    """Put first in a viewset's bases, with ``resource_type`` (and ``authz_actions`` for extra actions): lists show
    what the person may read; a lookup finds what they may read or act on (else 404), then the rule decides."""

    permission_classes = [OwnerGroupRule]
    resource_type: str = ""
    authz_actions: dict[str, str] = {}
    signed_callers: frozenset[str] = frozenset()  # people only; an action may take hosts' signed calls

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if is_signed(self.request):
            return queryset
        if self.detail:  # a lookup finds what the person may read or may do this to
            return authz.findable(actor(self.request), queryset, view_action(self))
        return authz.readable(actor(self.request), queryset)
