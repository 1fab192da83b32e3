"""The OpenAPI document and docs page of every role's API: who may read them, that they are generated without a
warning, valid OpenAPI 3.1, and that the docs page's scripts come from this host."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from luhyaapi.messages import ServerRegistration
from luhyaapi.openapi import role_patterns

pytestmark = [pytest.mark.database, pytest.mark.django_db]

ROLES = ["clc", "walrus", "cc", "nc", "sc", "watch"]


@pytest.fixture
def student(client):
    client.force_login(get_user_model().objects.create_user("pupil"))
    return client


@pytest.mark.parametrize("role", ROLES)
def test_every_role_serves_its_own_document_to_a_signed_call(signed_client, role):
    response = signed_client.get(f"/{role}/api/1.0/schema/?format=json")
    assert response.status_code == 200, response.content[:300]
    document = response.json()
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == f"eduCloud {role} API"
    assert f"/{role}/api/1.0/ping/" in document["paths"]
    assert all(route.startswith(f"/{role}/api/1.0/") for route in document["paths"])


def test_anyone_logged_in_reads_the_document_and_the_docs_page(student):
    assert student.get("/walrus/api/1.0/schema/?format=json").status_code == 200
    page = student.get("/clc/api/1.0/docs/")
    assert page.status_code == 200
    assert "/clc/api/1.0/schema/" in page.content.decode()


def test_the_document_is_json_unless_yaml_is_asked_for(student):
    assert student.get("/cc/api/1.0/schema/").json()["openapi"] == "3.1.0"
    yaml = student.get("/cc/api/1.0/schema/", HTTP_ACCEPT="application/vnd.oai.openapi")
    assert yaml.content.startswith(b"openapi: 3.1.0")


@pytest.mark.parametrize("url", ["/clc/api/1.0/schema/", "/cc/api/1.0/docs/"])
def test_nobody_unknown_reads_them_and_is_told_so_in_json(client, url):
    response = client.get(url, HTTP_ACCEPT="text/html,*/*;q=0.8")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"]


def test_the_docs_page_loads_swagger_ui_from_this_host(student):
    page = student.get("/cc/api/1.0/docs/").content.decode()
    assert "cdn" not in page.lower()
    assert f"{settings.STATIC_URL}drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    script = student.get(f"{settings.STATIC_URL}drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert b"SwaggerUI" in b"".join(script.streaming_content)


@pytest.mark.parametrize("role", ROLES)
def test_each_document_is_generated_without_error_or_warning_and_is_valid_openapi(role):
    GENERATOR_STATS.reset()
    generator = SchemaGenerator(patterns=role_patterns(role))
    document = generator.get_schema(request=None, public=True)
    assert not GENERATOR_STATS._error_cache and not GENERATOR_STATS._warn_cache, (
        dict(GENERATOR_STATS._error_cache) | dict(GENERATOR_STATS._warn_cache))
    validate_schema(document)


def test_a_pydantic_validated_body_is_described_by_the_model_itself(signed_client):
    document = signed_client.get("/cc/api/1.0/schema/?format=json").json()
    body = document["paths"]["/cc/api/1.0/register/server/"]["post"]["requestBody"]["content"]["application/json"]
    described = document["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[1]]
    expected = ServerRegistration.model_json_schema(mode="validation")
    assert described["required"] == expected["required"]
    assert described["properties"]["name"]["pattern"] == expected["properties"]["name"]["pattern"]
    assert described["additionalProperties"] is False


def test_every_operation_documents_the_json_error_of_a_refusal(signed_client):
    document = signed_client.get("/clc/api/1.0/schema/?format=json").json()
    for route, operations in document["paths"].items():
        for method, operation in operations.items():
            error = operation["responses"]["4XX"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}, (method, route)
