"""API of the cloud controller for the hosts' keys: hosts enrol (``enrolments/``), roles look up a sender's key
(``peers/<name>/``), administrators approve and revoke keys (``hostkeys/``) and issue join tokens (``jointokens/``);
adapters over ``clc.services.enrolment``."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from clc.api.authz import actor, as_api_error, check_person
from clc.services import authz, enrolment
from luhyaapi import trust
from luhyaapi.api import validated
from luhyaapi.drf import IsSignedNode, caller_allowed, callers, refusal_for, signed_node
from luhyaapi.messages import EnrolmentRequest
from luhyaapi.validators import validate_name
from luhyadb.choices import HostKindChoices, KeyStateChoices
from luhyadb.models import HostCredential, JoinToken, OwnerGroup


def _refused(exc: enrolment.EnrolmentRefused) -> Response:
    return Response({exc.field: [str(exc)]} if exc.field else {"detail": str(exc)}, status=exc.status)


PEER = inline_serializer("Peer", {
    "name": serializers.CharField(), "public_key": serializers.CharField(),
    "roles": serializers.ListField(child=serializers.CharField()), "cluster": serializers.CharField(),
    "mac": serializers.CharField()})
ENROLMENT = inline_serializer("Enrolment", {
    "name": serializers.CharField(), "state": serializers.ChoiceField(choices=KeyStateChoices.choices),
    "fingerprint": serializers.CharField(), "clc": PEER})


def enrolment_answer(credential: HostCredential) -> dict:
    """What a host learns from enrolling: its key's state and fingerprint, and the CLC's key to check its calls."""
    return {"name": credential.name, "state": credential.state, "fingerprint": credential.fingerprint,
            "clc": trust.own_peer().as_json()}


class EnrolmentView(APIView):
    """``POST enrolments/`` (``EnrolmentRequest``): a host asks to have its key trusted; 200 with ``state`` active
    (a join token, or a key already approved), 202 with ``state`` pending (an administrator approves it). Anyone
    may ask (a new host has no trusted key yet); a cluster controller passes on its nodes' and PCs' requests
    (signed)."""

    permission_classes = [permissions.AllowAny]
    signed_callers = callers("cc")

    @extend_schema(request=EnrolmentRequest, responses={200: ENROLMENT, 202: ENROLMENT})
    def post(self, request):
        via = signed_node(request)
        if via is not None and not caller_allowed(request, self):
            raise exceptions.PermissionDenied(refusal_for(self))
        address = request.query_params.get("address", "") if via else request.META.get("REMOTE_ADDR", "")
        try:
            credential = enrolment.enrol(validated(EnrolmentRequest, request.data), address=address or None,
                                         via=trust.peer(via.name) if via else None)
        except enrolment.EnrolmentRefused as exc:
            return _refused(exc)
        active = credential.state == KeyStateChoices.ACTIVE
        return Response(enrolment_answer(credential), status=status.HTTP_200_OK if active else status.HTTP_202_ACCEPTED)


class PeerView(APIView):
    """``GET peers/<name>/`` (signed, by servers): the public key, roles and cluster of an enrolled host, for a role
    checking that host's calls; 404 for a host that is unknown, waiting for approval or revoked."""

    permission_classes = [IsSignedNode]
    signed_callers = callers("walrus", "cc", "nc", "sc", "watch")

    @extend_schema(responses=PEER)
    def get(self, request, name: str):
        found = trust.peer(validate_name(name, "name"))
        if found is None:
            raise exceptions.NotFound(f"{name} is not a trusted host of this cloud")
        return Response(found.as_json())


class HostCredentialSerializer(serializers.ModelSerializer):
    """A host's key; who approved or revoked it as the asking person may read it (``enrolment.acted_by``)."""

    roles = serializers.SerializerMethodField()
    approved_by = serializers.SerializerMethodField()
    revoked_by = serializers.SerializerMethodField()

    class Meta:
        model = HostCredential
        fields = ("name", "kind", "roles", "cluster", "mac", "fingerprint", "state", "address", "requested_at",
                  "approved_at", "approved_by", "revoked_at", "revoked_by")
        read_only_fields = fields

    def get_roles(self, credential: HostCredential) -> list[str]:
        return sorted(credential.role_set)

    def get_approved_by(self, credential: HostCredential) -> str:
        return enrolment.acted_by(actor(self.context["request"]), credential.approved_by)

    def get_revoked_by(self, credential: HostCredential) -> str:
        return enrolment.acted_by(actor(self.context["request"]), credential.revoked_by)


class PersonOnly(permissions.BasePermission):
    """People with an account (the rule is asked by the service, record by record)."""

    def has_permission(self, request, view) -> bool:
        if signed_node(request) is not None:
            self.message = refusal_for(view)
            return False
        return bool(check_person(request))


class HostCredentialViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Hosts' keys the person may manage (servers': the root's administrators; PCs': who may create PCs where the PC
    is): list (``?state=pending|active|revoked``), get, ``approve/`` a pending key, ``revoke/`` a key."""

    queryset = HostCredential.objects.all()  # the model, for the API document; each person's keys: get_queryset
    serializer_class = HostCredentialSerializer
    permission_classes = [PersonOnly]
    lookup_field = "name"

    def get_queryset(self):
        keys = enrolment.manageable(actor(self.request))
        state = self.request.query_params.get("state", "")
        if state:
            if state not in ("pending", "active", "revoked"):
                raise exceptions.ValidationError({"state": ["must be one of pending, active, revoked"]})
            keys = keys.filter(state=state)
        return keys

    def get_object(self):
        return get_object_or_404(self.get_queryset(), name=validate_name(self.kwargs["name"], "name"))

    def _act(self, change) -> Response:
        try:
            credential = change(self.get_object(), actor(self.request))
        except authz.Denied as denied:
            raise as_api_error(denied) from None
        except enrolment.EnrolmentRefused as exc:
            return _refused(exc)
        return Response(HostCredentialSerializer(credential, context={"request": self.request}).data)

    @extend_schema(request=inline_serializer("Approval", {"fingerprint": serializers.CharField()}),
                   responses=HostCredentialSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, name: str):
        """Trust a waiting key: ``{"fingerprint": "SHA256:..."}``, the one compared with what the host logged
        (another key than that one is a 409)."""
        seen = request.data.get("fingerprint", "") if isinstance(request.data, dict) else ""
        return self._act(lambda credential, person: enrolment.approve(credential, person, str(seen)))

    @action(detail=True, methods=["post"])
    def revoke(self, request, name: str):
        return self._act(enrolment.revoke)


class JoinTokenSerializer(serializers.ModelSerializer):
    """A join token as listed (never its secret, which only the answer to its creation carries)."""

    owner_group = serializers.SlugRelatedField(slug_field="path", queryset=OwnerGroup.objects.all(), allow_null=True,
                                               required=False)
    roles = serializers.ListField(child=serializers.CharField(max_length=10), required=False, max_length=5)
    uses = serializers.IntegerField(write_only=True, required=False, default=1)
    hours = serializers.FloatField(write_only=True, required=False, default=enrolment.TOKEN_HOURS_DEFAULT)
    kind = serializers.ChoiceField(choices=HostKindChoices.choices)
    cluster = serializers.CharField(max_length=63)

    class Meta:
        model = JoinToken
        fields = ("id", "label", "kind", "roles", "cluster", "owner_group", "uses", "hours", "uses_left", "expires",
                  "created", "created_by")
        read_only_fields = ("id", "uses_left", "expires", "created", "created_by")

    def to_representation(self, token: JoinToken) -> dict:
        shown = super().to_representation(token)
        shown["roles"] = [role for role in token.roles.split(",") if role]
        return shown

    def validate_cluster(self, value: str) -> str:
        return validate_name(value, "cluster")


class JoinTokenViewSet(mixins.CreateModelMixin, mixins.ListModelMixin, mixins.DestroyModelMixin,
                       viewsets.GenericViewSet):
    """Join tokens: issue one (201 with ``token``, the secret, shown this once), list, withdraw (DELETE). Server
    tokens are the root's administrators'; PC tokens whoever may create PCs in the token's owner-group."""

    queryset = JoinToken.objects.all()  # the model, for the API document; each person's tokens: get_queryset
    serializer_class = JoinTokenSerializer
    permission_classes = [PersonOnly]

    def get_queryset(self):
        return enrolment.tokens_of(actor(self.request))

    def create(self, request, *args, **kwargs):
        data = JoinTokenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        try:
            issued = enrolment.issue_join_token(
                actor(request), kind=fields["kind"], cluster=fields["cluster"], roles=fields.get("roles"),
                owner_group=fields.get("owner_group"), uses=fields["uses"], hours=fields["hours"],
                label=fields.get("label", ""))
        except authz.Denied as denied:
            raise as_api_error(denied) from None
        except enrolment.EnrolmentRefused as exc:
            return _refused(exc)
        return Response(JoinTokenSerializer(issued.record).data | {"token": issued.secret},
                        status=status.HTTP_201_CREATED)

    def perform_destroy(self, token: JoinToken) -> None:
        enrolment.withdraw_token(token)
