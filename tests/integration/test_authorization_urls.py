"""Every URL of the cloud says who may call it: the URLconf, walked here, must match the table of
``url_expectations`` name for name (a new URL without an entry fails this test), signed calls of each role of the
cloud reach exactly the URLs that take that role, and the Django admin is the first administrator's alone. (What
each person gets from each URL is ``test_authorization_property``.)"""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from luhyaapi.signing import canonical_path, sign_headers
from luhyaapi.trust import PC
from tests.authz_rule import Person
from tests.integration.authz_world import SUPERUSER, Spec, build_world
from tests.integration.url_expectations import EXPECTATIONS, REMOVALS
from tests.keys import enrolled_key, new_key

pytestmark = [pytest.mark.database, pytest.mark.django_db]

HOST_ROLES = ("clc", "walrus", "cc", "nc", "sc", "watch", PC)
PC_MAC = "52:54:00:00:09:99"


def url_patterns(patterns=None, namespace: str = "", prefix: str = ""):
    """(name, route) of every URL: ``namespace:name``, or the route itself for a pattern without a name."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            inner = ":".join(part for part in (namespace, pattern.namespace or "") if part)
            yield from url_patterns(pattern.url_patterns, inner, route)
        elif isinstance(pattern, URLPattern):
            name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name or route
            yield name, route


def is_admin(name: str, route: str) -> bool:
    return name.startswith("admin:") or route.startswith("admin/")


def test_every_url_of_the_urlconf_declares_who_may_call_it():
    names = {name for name, route in url_patterns() if not is_admin(name, route)}
    declared = set(EXPECTATIONS) | set(REMOVALS)
    assert not names - declared, f"URLs nobody declared who may call (add them to url_expectations): " \
                                 f"{sorted(names - declared)}"
    assert not declared - names, f"declared URLs the URLconf does not have: {sorted(declared - names)}"


def small_world():
    paths = ["edu", "edu.a", "edu.b"]
    grants = {path: {} for path in paths}
    people = [Person("person-a", "edu.a", "superadm", {})]
    return build_world(Spec(paths, grants, people, ["edu.a"], [("edu.a", 0, "person-a")], ["edu.a"]))


def signed(method: str, path: str, body: dict | None, key) -> object:
    data = json.dumps(body).encode() if body is not None else b""
    route, _, query = path.partition("?")
    headers = sign_headers(key, method, "testserver", canonical_path(route, query), data)
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    return Client().generic(method, path, data, content_type="application/json", **extra)


def keys_by_role() -> dict[str, object]:
    """A trusted key of each role (a PC's with its MAC), in the test host's cluster."""
    return {role: enrolled_key(f"host-{role}", role, mac=PC_MAC if role == PC else "") for role in HOST_ROLES}


def test_signed_calls_of_each_role_reach_exactly_the_urls_that_take_that_role():
    world = small_world()
    keys = keys_by_role()
    wrong = []
    for name, expectation in {**EXPECTATIONS, **REMOVALS}.items():
        calls = list(expectation.probe(world, SUPERUSER))
        if not calls:
            continue
        first = calls[0]
        method, path, body = expectation.signed_call(world) if expectation.signed_call else (
            first.method, first.path, first.body)
        # An open URL (ping, login, enrolments) ignores who signs, unless it names the roles it takes signed.
        public = first.expect == 200 and all(call.expect == 200 for call in expectation.probe(world, None))
        for role, key in keys.items():
            code = signed(method, path, body, key).status_code
            allowed = role in expectation.signed or (public and not expectation.signed)
            if name.startswith("nc:kiosk"):
                allowed = code == 404  # off on this host: nobody's
            if allowed and code in (401, 403):
                wrong.append((name, role, method, path, code, "refused a role it takes"))
            if not allowed and code not in (302, 403, 404 if name.startswith("nc:kiosk") else 403):
                wrong.append((name, role, method, path, code, "let in a role it does not take"))
    assert not wrong, "\n".join(map(str, wrong))


def test_every_signed_endpoint_refuses_unknown_keys_wrong_signatures_and_replays():
    world = small_world()
    for name, expectation in EXPECTATIONS.items():
        if not expectation.signed or expectation.signed_call is None:
            continue
        method, path, body = expectation.signed_call(world)
        role = sorted(expectation.signed)[0]
        enrolled_key(f"host-{role}", role, mac=PC_MAC if role == PC else "")
        stranger = signed(method, path, body, new_key("stranger"))
        impostor = signed(method, path, body, new_key(f"host-{role}"))  # a name the cloud knows, another key
        assert (name, stranger.status_code) == (name, 401)
        assert (name, impostor.status_code) == (name, 403)
        first = signed(method, path, body, enrolled_key(f"replay-{role}", role, mac=PC_MAC if role == PC else ""))
        caught = {key: value for key, value in first.wsgi_request.META.items() if key.startswith("HTTP_X_EDUCLOUD")}
        again = Client().generic(method, path, json.dumps(body).encode() if body is not None else b"",
                                 content_type="application/json", **caught)
        assert (name, again.status_code, b"replayed" in again.content) == (name, 401, True), again.content[:200]


def admin_urls(world) -> list[tuple[str, str]]:
    """Every admin URL with its parts filled in: an object's id of its model where the URL names one."""
    ids = {"auth/user": get_user_model().objects.first().pk}
    urls = []
    for name, route in url_patterns():
        if not is_admin(name, route):
            continue
        path = "/" + route.replace("^", "").replace("$", "")
        model = re.match(r"/admin/([a-z_]+/[a-z_]+)/", path)
        object_id = str(ids.get(model[1], 1)) if model else "1"
        path = re.sub(r"<path:object_id>|<id>", object_id, path)
        path = path.replace("<path:content_type_id>", "1")
        path = re.sub(r"\(\?P<app_label>[^)]*\)", "luhyadb", path)
        path = re.sub(r"\(\?P<url>\.\*\)", "nowhere/", path)
        urls.append((name, path))
    return urls


def test_the_django_admin_is_the_first_administrators_alone():
    world = small_world()
    people = Client()
    people.force_login(get_user_model().objects.get(username="person-a"))  # a school's super administrator
    superuser = Client()
    superuser.force_login(get_user_model().objects.get(username=SUPERUSER.username))
    host = keys_by_role()["clc"]
    wrong = []
    urls = admin_urls(world)
    assert len(urls) > 50
    for name, path in urls:
        if name.endswith("logout"):
            continue
        for who, client in (("nobody", Client()), ("school superadm", people)):
            answer = client.get(path)
            if not (answer.status_code == 302 and "/admin/login/" in answer["Location"]) and \
                    not path.startswith("/admin/login/"):
                wrong.append((name, path, who, answer.status_code))
        signed_answer = signed("GET", path, None, host)
        if signed_answer.status_code not in (302, 403) and not path.startswith("/admin/login/"):
            wrong.append((name, path, "signed host", signed_answer.status_code))
        answer = superuser.get(path)  # in: an action an admin page leaves out (adding networks, say) is its 403
        if answer.status_code == 302 and "/admin/login/" in answer["Location"]:
            wrong.append((name, path, "superuser", answer.status_code))
        elif name.endswith("_changelist") and answer.status_code != 200:
            wrong.append((name, path, "superuser's list", answer.status_code))
    assert not wrong, "\n".join(map(str, wrong))
