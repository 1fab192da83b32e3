"""The OpenAPI 3.1 document of each role's API (``/<role>/api/1.0/schema/``) and its browsable page (``docs/``),
with what drf-spectacular cannot see by itself: the pydantic models that plain views validate bodies against, and
the signed-call authentication."""

from __future__ import annotations

from django.urls import URLPattern, include, path
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.utils import OpenApiParameter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from pydantic import BaseModel
from rest_framework import permissions
from rest_framework.renderers import JSONRenderer

from luhyaapi.drf import SignedNode
from luhyaapi.signing import HEADER_SIGNATURE


def choice_parameter(name: str, choices: list[str], description: str = "") -> OpenApiParameter:
    """A query parameter that filters by one of ``choices`` (anything else is a 400 naming it)."""
    return OpenApiParameter(name, str, enum=list(choices), description=description or f"only those with this {name}")


def number_parameter(name: str, low: int, high: int | None = None, *, description: str = "",
                     required: bool = False) -> OpenApiParameter:
    """A whole-number query parameter from ``low`` (to ``high``)."""
    schema = {"type": "integer", "minimum": low} | ({"maximum": high} if high is not None else {})
    return OpenApiParameter(name, schema, required=required, description=description)


# Every refusal under /api/ is JSON: {"detail": "..."} or {field: ["message", ...]} (luhyaapi.api.exception_handler).
ERROR_SCHEMA = {
    "type": "object", "minProperties": 1,
    "description": 'Why the call was refused: {"detail": "..."} or {"<field>": ["what is wrong", ...]}.',
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}


def add_error_responses(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: every operation may answer 4xx, and 5xx where the cloud cannot do it now, with an
    ``Error`` (the one error format of the API)."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    errors = {
        "4XX": {"description": "refused: a bad value (400, naming the field), not signed or logged in (401), not "
                               "allowed (403), not found (404), or in a state that does not allow it (409)",
                "content": content},
        "5XX": {"description": "the cloud cannot do it now: another role cannot be reached or refused (502), no "
                               "role that could do it is online (503), the disk is too full (507)",
                "content": content}}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for status, response in errors.items():
                operation.setdefault("responses", {}).setdefault(status, response)
    return result


class IsSignedOrLoggedIn(permissions.BasePermission):
    """Who may read a role's API description: any signed role, or anyone logged in (a student too). The document
    names endpoints and fields, never records or keys, so it needs no more than the API's weakest caller."""

    message = "sign the call, or log in"

    def has_permission(self, request, view) -> bool:
        user = request.user
        return isinstance(user, SignedNode) or bool(user and user.is_authenticated)


class PydanticModelSchema(OpenApiSerializerExtension):
    """A pydantic model given to ``extend_schema(request=..., responses=...)`` is described by pydantic's own JSON
    schema, so the document and the validation cannot drift apart. Unlike drf-spectacular's contrib extension it
    describes a request as pydantic validates it (``mode="validation"``), not as it would serialize it."""

    target_class = BaseModel
    match_subclasses = True
    priority = 1  # before drf_spectacular.contrib.pydantic

    def get_name(self, auto_schema, direction) -> str:
        return self.target.__name__

    def map_serializer(self, auto_schema, direction) -> dict:
        mode = "validation" if direction == "request" else "serialization"
        schema = self.target.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
        for name, sub_schema in schema.pop("$defs", {}).items():
            auto_schema.registry.register_on_missing(ResolvedComponent(
                name=name, type=ResolvedComponent.SCHEMA, object=name, schema=sub_schema))
        return schema


class SignedRequestScheme(OpenApiAuthenticationExtension):
    """The Ed25519 signature of calls between hosts (``luhyaapi.signing``)."""

    target_class = "luhyaapi.drf.SignedRequestAuthentication"
    name = "educloudSignature"

    def get_security_definition(self, auto_schema) -> dict:
        return {"type": "apiKey", "in": "header", "name": HEADER_SIGNATURE,
                "description": "The sending host's Ed25519 signature (its own key, enrolled with the CLC) over "
                               "method, Host, path with query, X-Educloud-Timestamp, X-Educloud-Nonce, "
                               "X-Educloud-Sender and the body's sha256 (X-Educloud-Content-Sha256); each nonce is "
                               "taken once. See luhyaapi/signing.py and docs/security.md."}


class UploadTokenScheme(OpenApiAuthenticationExtension):
    """The pre-signed token of one upload's data (walrus), made by the CLC for the browser."""

    target_class = "walrus.api.authentication.UploadTokenAuthentication"
    name = "uploadToken"
    optional = True  # only hosts that run walrus have it

    def get_security_definition(self, auto_schema) -> dict:
        return {"type": "apiKey", "in": "query", "name": "token",
                "description": "<issuer>.<signature>: the CLC host's signature of the upload's id and "
                               "?expires=<epoch>."}


class JsonRefusals:
    """For views that render something else than JSON: their refusals are JSON like every other answer under
    ``/api/`` (whatever the client accepts, so a 406 too)."""

    def handle_exception(self, exc):
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().handle_exception(exc)


class RoleSchemaView(JsonRefusals, SpectacularAPIView):
    """``GET /<role>/api/1.0/schema/``: the OpenAPI document of one role's API (JSON, or YAML when asked for with
    ``Accept: application/vnd.oai.openapi`` or ``?format=yaml``)."""

    role = ""
    permission_classes = [IsSignedOrLoggedIn]
    renderer_classes = [OpenApiJsonRenderer, OpenApiJsonRenderer2, OpenApiYamlRenderer, OpenApiYamlRenderer2]

    def get(self, request, *args, **kwargs):
        self.patterns = role_patterns(self.role)
        return super().get(request, *args, **kwargs)


class RoleDocsView(JsonRefusals, SpectacularSwaggerView):
    """``GET /<role>/api/1.0/docs/``: Swagger UI over the role's document, its scripts served from this host (the
    sidecar package, through whitenoise)."""

    permission_classes = [IsSignedOrLoggedIn]


def role_patterns(role: str) -> list[URLPattern]:
    """The URL patterns a role's document describes: its API, where the host mounts it."""
    return [path(f"{role}/api/1.0/", include(f"{role}.api.urls"))]


def schema_urls(role: str) -> list[URLPattern]:
    """The document and docs page of ``role``, to mount under ``/<role>/api/1.0/`` beside its API."""
    return [
        path("schema/", RoleSchemaView.as_view(role=role, custom_settings={"TITLE": f"eduCloud {role} API"}),
             name=f"{role}-api-schema"),
        path("docs/", RoleDocsView.as_view(url_name=f"{role}-api-schema", title=f"eduCloud {role} API"),
             name=f"{role}-api-docs"),
    ]
