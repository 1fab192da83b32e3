"""Every path parameter of every API route, walked from the URLconf: a value with an encoded '/' (``%2F``) is a 400
naming that parameter, through the product's web server (waitress passes the raw URL on; the path the application
routes has the '/' decoded, which would otherwise match no route, 404, or another route)."""

from __future__ import annotations

import http.client
import json
import re
import threading
from dataclasses import replace

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from daemons.host import web_server

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

_API = re.compile(r"^[a-z]+/api/1\.0/")
STAND_IN = "ab0slash0cd"  # letters and digits, lower case: every parameter's pattern takes them
# A parameter whose route takes only values of some shape: what the value starts with.
SHAPED = {"rest": "uploads/"}


def api_routes(patterns=None, namespace: str = "", prefix: str = ""):
    """(name to reverse, parameter names) of every API route with path parameters."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern).lstrip("^")
        if isinstance(pattern, URLResolver):
            inner = ":".join(part for part in (namespace, pattern.namespace or "") if part)
            yield from api_routes(pattern.url_patterns, inner, route)
        elif isinstance(pattern, URLPattern) and _API.match(route) and pattern.pattern.regex.groupindex:
            yield f"{namespace}:{pattern.name}", sorted(pattern.pattern.regex.groupindex)


def cases():
    """One URL per API route and parameter: that parameter holds an encoded '/', the others a plain value."""
    found = []
    for name, parameters in api_routes():
        for parameter in parameters:
            values = {other: SHAPED.get(other, "") + "x1" for other in parameters}
            values[parameter] = SHAPED.get(parameter, "") + STAND_IN
            found.append(pytest.param(reverse(name, kwargs=values).replace("0slash0", "%2F"), parameter,
                                      id=f"{name}[{parameter}]"))
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = web_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield server.effective_port
    server.close()
    thread.join(10)


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, data_dir=tmp_path / "data")


def test_the_walk_finds_the_routes_of_every_api_role():
    names = {name for name, _ in api_routes()}
    assert {name.split(":")[0] for name in names} >= {"clc-api", "walrus-api", "cc-api"}
    assert len(cases()) >= 40


@pytest.mark.parametrize("url, parameter", cases())
def test_an_encoded_slash_in_a_path_parameter_is_a_400_naming_it(server, url, parameter):
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    try:
        connection.request("GET", url)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 400, (url, response.status, body[:300])
    answer = json.loads(body)
    assert list(answer) == [parameter], answer
    assert "%2F" in answer[parameter][0]
