"""What the API fuzz test (``tests/integration/test_api_fuzz.py``) is made of: callers that authenticate requests
inside the WSGI app (a person's session, or a node's signature), a small world of records for the fuzzer to reach,
the rule every answer must keep, the tally of what was sent and answered, and a guard that keeps every connection
the app makes on the loopback."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import secrets
import socket
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.core.handlers.wsgi import WSGIRequest
from django.utils.module_loading import import_string

from cc.models import ClusterInstance, ClusterNode
from clc.services.networks import save_network, validate_network
from clc.tests.people import make_person
from luhyaapi.keys import HostKey
from luhyaapi.signing import canonical_host, canonical_path, sign_headers
from luhyadb.choices import ResourceTypeChoices
from luhyadb.models import (
    Host,
    Image,
    ImageVersion,
    Instance,
    OwnerGroup,
    OwnerGroupPermission,
    Server,
    TaskTransaction,
    VMType,
)
from luhyadb.services.initial_data import seed_initial_data
from tests.keys import enrolled_key
from walrus.services import store

SUMMARY = pytest.StashKey[str]()  # the fuzz test's one line for the end of the pytest run
NODE_NAME = "nc-1"
PC_MAC = "52:54:00:3c:0f:7e"
IMAGE_ID = "img-0000abcd"
IMAGE_FILE = b"eduCloud fuzz image\n" * 64


def sign(environ: dict, key: HostKey) -> None:
    """Sign the request in ``environ`` with a host's ``key``, as that host would (the one place the fuzz test signs:
    a change of the signing scheme changes only this)."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.input"] = io.BytesIO(body)
    request = WSGIRequest(environ | {"wsgi.input": io.BytesIO()})
    path = canonical_path(request.path, environ.get("QUERY_STRING", ""))
    for name, value in sign_headers(key, environ["REQUEST_METHOD"], canonical_host(request.get_host()), path,
                                    body).items():
        environ[f"HTTP_{name.upper().replace('-', '_')}"] = value


def session_for(user) -> str:
    """A new login session of ``user`` (what the login page makes), by its cookie value."""
    engine = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    session = engine()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return session.session_key


@dataclass
class Tally:
    """What the fuzzer sent and what came back, and each answer that broke the rule."""

    requests: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    operation: str = ""  # the operation being fuzzed, set by the test
    turned_away: int = 0  # operations whose view refused this caller every time, fuzzed no further
    by_operation: dict[str, Counter] = field(default_factory=dict)

    def record(self, who: str, method: str, path: str, query: str, status: int, body: bytes, content_type: str,
               sent: bytes) -> None:
        self.requests[who] += 1
        self.statuses[status] += 1
        self.by_operation.setdefault(self.operation, Counter())[status] += 1
        problem = answer_problem(status, body, content_type)
        if problem:
            self.add_problem(f"{who}: {method} {path}{'?' + query if query else ''} -> {status}: {problem}\n"
                             f"    sent: {sent[:300]!r}\n    answer: {body[:300]!r}")

    def add_problem(self, text: str) -> None:
        if len(self.problems) < 200:  # enough to read; the first ones say what is wrong
            self.problems.append(text)

    def by_class(self) -> dict[str, int]:
        classes = Counter()
        for status, count in self.statuses.items():
            classes[f"{status // 100}xx"] += count
        return dict(sorted(classes.items()))


# The 5xx answers the API gives on purpose, each with a JSON detail: another role cannot be reached or refused (502),
# no role that could do it is online (503), the disk is too full (507). Anything else from 5xx up is a bug.
DESIGNED_5XX = frozenset({502, 503, 507})


def answer_problem(status: int, body: bytes, content_type: str) -> str:
    """Why an answer breaks the API's rule, or "": no server error (a 500, or any 5xx that is not one of the
    ``DESIGNED_5XX`` with a detail), and a refusal is JSON that names the field (``{"detail": "..."}`` or
    ``{field: ["message", ...]}``)."""
    if status < 400:
        return ""
    if status >= 500 and status not in DESIGNED_5XX:
        return "a server error"
    if not content_type.startswith("application/json"):
        return f"a refusal that is not JSON ({content_type or 'no content type'})"
    try:
        answer = json.loads(body)
    except ValueError:
        return "a refusal whose body is not JSON"
    if not isinstance(answer, dict) or not answer:
        return "a refusal that is not a JSON object naming the field"
    if isinstance(answer.get("detail"), str) and answer["detail"]:
        return ""
    if status >= 500:
        return "a server error without a detail"
    named = all(isinstance(messages, list) and messages and all(isinstance(m, str) and m for m in messages)
                for messages in answer.values())
    return "" if named else "a refusal without a detail and without messages by field"


class Caller:
    """The WSGI app as one caller sees it: authenticates each request (signed with a host's ``key``, or a session
    cookie with its CSRF token, as a browser sends it) and tallies the answer."""

    def __init__(self, app, who: str, tally: Tally, session_key: str | None = None, key: HostKey | None = None) -> None:
        self.app, self.who, self.tally, self.session_key, self.key = app, who, tally, session_key, key

    def __call__(self, environ: dict, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        sent = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(sent)
        if self.key is not None:
            sign(environ, self.key)
        else:
            token = secrets.token_hex(16)
            environ["HTTP_COOKIE"] = f"{settings.SESSION_COOKIE_NAME}={self.session_key}; csrftoken={token}"
            environ["HTTP_X_CSRFTOKEN"] = token
        answered = {}

        def remember(status: str, headers: list, exc_info=None):
            answered["status"], answered["headers"] = int(status.split()[0]), dict(headers)
            return start_response(status, headers, exc_info)

        chunks = list(self.app(environ, remember))
        self.tally.record(self.who, environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                          environ.get("QUERY_STRING", ""), answered["status"], b"".join(chunks),
                          answered["headers"].get("Content-Type", ""), sent)
        return chunks


@dataclass(frozen=True)
class World:
    """The records the fuzzer may reach by their ids (path parameters it tries besides random ones)."""

    known: dict[str, list[str]]


def _full_rights(group: OwnerGroup) -> None:
    for resource_type in ResourceTypeChoices.values:
        OwnerGroupPermission.objects.get_or_create(owner_group=group, resource_type=resource_type, defaults={
            "read": True, "write": True, "execute": True, "create": True, "delete": True})


def seed_world(cc_url: str) -> World:
    """Owner-groups, a super administrator (``admin``), a teacher and a student (``pupil``) with an assigned remote
    desktop running on the node, an image with a version (a real file in walrus), a local desktop, a classroom PC,
    the cluster's CC at ``cc_url`` (walrus too) with one node, its network, a task and an upload under way."""
    seed_initial_data()
    school = OwnerGroup.objects.create(path="edu.school1", name="School 1")
    pupils = OwnerGroup.objects.create(path="edu.school1.class1", name="Class 1")
    for group in (school, pupils):
        _full_rights(group)
    make_person("admin", "superadm", "edu")
    make_person("teacher", "poweradm", "edu.school1")
    pupil = make_person("pupil", "user", "edu.school1.class1")

    now = datetime.now(tz=UTC)
    Server.objects.create(role="cc", name="cc-1", ip="127.0.0.1", cluster=settings.EDUCLOUD.cluster, api_url=cc_url,
                          state="online", last_seen=now)
    Server.objects.create(role="walrus", name="walrus-1", ip="127.0.0.1", cluster=settings.EDUCLOUD.cluster,
                          api_url=cc_url, state="online", last_seen=now)
    Server.objects.create(role="nc", name=NODE_NAME, ip="127.0.0.1", cluster=settings.EDUCLOUD.cluster,
                          state="online", last_seen=now, cpus=2, memory_mb=4096, disk_mb=10**5)
    enrolled_key(NODE_NAME)
    ClusterNode.objects.create(name=NODE_NAME, role="nc", ip="127.0.0.1", cpus=2, memory_mb=4096, disk_mb=10**5,
                               free_disk_mb=10**5, last_seen=now)
    Host.objects.create(name="pc-12", mac=PC_MAC, ip="127.0.0.12", cluster=settings.EDUCLOUD.cluster,
                        owner_group=pupils, location="Room 1", last_seen=now)
    save_network(validate_network({
        "cluster": settings.EDUCLOUD.cluster, "kind": "rvd", "mode": "private", "cc_eip": "127.0.0.1",
        "cc_internal_ip": "10.20.0.1", "cc_public_interface": "eth0", "cc_private_interface": "eth1",
        "lan_subnet": "10.20.0.0/24", "lan_gateway": "10.20.0.1", "port_low": 6400, "port_high": 6999}))

    upload = store.start_upload(IMAGE_ID, len(IMAGE_FILE), hashlib.sha256(IMAGE_FILE).hexdigest())
    store.write_upload(upload.upload_id, 0, len(IMAGE_FILE), io.BytesIO(IMAGE_FILE).read)
    stored, _ = store.complete_upload(upload.upload_id)
    pending = store.start_upload(IMAGE_ID, 4096)
    image = Image.objects.create(image_id=IMAGE_ID, name="Maths lab", owner_group=school, current_version=1,
                                 size_bytes=stored.size)
    ImageVersion.objects.create(image=image, number=1, label="1.0.0", size_bytes=stored.size, sha256=stored.sha256,
                                format=stored.format)
    tiny = VMType.objects.get(name="tiny") if VMType.objects.filter(name="tiny").exists() else VMType.objects.first()
    desktop = Instance.objects.create(instance_id="ins-0000d001", name="Pupil desktop", kind="rvd", image=image,
                                      vm_type=tiny, owner_group=pupils, assigned_to=pupil.user, services=[80],
                                      mac="52:54:00:00:d0:01", state="running", cluster=settings.EDUCLOUD.cluster,
                                      node=NODE_NAME, runs=1, console_url="vnc://127.0.0.1:6400",
                                      console_password="fuzz1234")
    Instance.objects.create(instance_id="ins-0000d002", name="Room desktop", kind="lvd", image=image, vm_type=tiny,
                            owner_group=pupils, mac="52:54:00:00:d0:02")
    ClusterInstance.objects.create(instance_id=desktop.instance_id, node=NODE_NAME, tid="", seq=1, cpus=1,
                                   memory_mb=256, kind="rvd", state="running")
    tid = f"{IMAGE_ID}:{IMAGE_ID}:ins-0000e001"
    TaskTransaction.objects.create(tid=tid, src_image_id=IMAGE_ID, dst_image_id=IMAGE_ID,
                                   instance_id="ins-0000e001", user="teacher")
    return World(known={
        "image_id": [IMAGE_ID], "instance_id": ["ins-0000d001", "ins-0000d002"], "insid": ["ins-0000d001"],
        "mac": [PC_MAC], "username": ["pupil", "teacher"], "path": ["edu.school1", "edu.school1.class1"],
        "cluster": [settings.EDUCLOUD.cluster], "name": [NODE_NAME, "cc-1", tiny.name], "role": ["nc", "cc"],
        "tid": [tid], "upload_id": [pending.upload_id], "version": ["1", "current"], "step": ["prepare", "cancel"]})


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host in ("localhost", "testserver")


class LoopbackOnly:
    """While the fuzzer runs, the app reaches nothing but this machine: a connection elsewhere (a server the fuzzer
    registered at a random address) is refused, a datagram elsewhere (a magic packet to a random broadcast) is
    dropped and recorded, and only local names resolve."""

    def __init__(self, monkeypatch) -> None:
        self.dropped: list[tuple[str, int]] = []
        real_connect, real_sendto, real_getaddrinfo = socket.socket.connect, socket.socket.sendto, socket.getaddrinfo

        def connect(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(str(address[0])):
                raise ConnectionRefusedError(f"the fuzz test connects only to this machine, not {address[0]}")
            return real_connect(sock, address)

        def sendto(sock, data, *args):
            address = args[-1]
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(str(address[0])):
                self.dropped.append((str(address[0]), int(address[1])))
                return len(data)
            return real_sendto(sock, data, *args)

        def getaddrinfo(host, *args, **kwargs):
            if host is not None and not _loopback(host if isinstance(host, str) else host.decode()):
                raise socket.gaierror(socket.EAI_NONAME, f"the fuzz test resolves only local names, not {host}")
            return real_getaddrinfo(host, *args, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "sendto", sendto)
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
