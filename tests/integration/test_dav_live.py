"""WebDAV shares on a live host (``manage.py run_cloud`` with clc, cc and sc), logged in with real accounts that the
SC checks with the CLC: the litmus compliance suite (basic, copymove, props, locks), a second client (Python requests
with PROPFIND) round-tripping a 100 MiB file with its sha256, other homes and branches refused, the quota's 507,
bad names refused, and the portal's "My files" link to the SC."""

from __future__ import annotations

import hashlib
import http.client
import re
import shutil
import subprocess
import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.services import ConsoleClient, RoleProcess, free_port, free_tgt_control_port, processes_mentioning, wait_for

pytestmark = pytest.mark.e2e

QUOTA_MB = 150
PASSWORDS = {"teacher": "Teacher-dav-pw-1", "student": "Student-dav-pw-1", "other": "Other-dav-pw-1"}
BIG = 100 * 2**20
PIECE = 2**20


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """One host running the CLC, a CC and the SC; edu.s1 (a school) with its class c1, and edu.s2; a teacher of
    edu.s1 (power user), a student of edu.s1.c1 and someone of edu.s2."""
    workdir = tmp_path_factory.mktemp("dav")
    # The SC's iSCSI target daemon (tgtd) on ports of its own, never the machine's 3260.
    control = free_tgt_control_port()
    process = RoleProcess(workdir, "dav", "clc,cc,sc",
                          {"sc": {"dav_quota_mb": str(QUOTA_MB), "iscsi_listen": f"127.0.0.1:{free_port()}",
                                  "tgt_control_port": str(control)},
                           "cloud": {"heartbeat_seconds": "1"}})
    process.start().wait_listening()
    try:
        admin = ConsoleClient(process.url)
        for path, kind in (("edu.s1", "school"), ("edu.s1.c1", "class"), ("edu.s2", "school")):
            admin.post("/clc/api/1.0/ownergroups/", {"path": path, "name": path, "kind": kind})
        for username, path, role in (("teacher", "edu.s1", "poweruser"), ("student", "edu.s1.c1", "user"),
                                     ("other", "edu.s2", "poweruser")):
            admin.post("/clc/api/1.0/accounts/", {"username": username, "owner_group": path, "role": role,
                                                  "password": PASSWORDS[username]})
        yield process
    finally:
        process.stop()
        if processes_mentioning(f"tgtd -f -C {control} "):  # tgtd ignores SIGTERM while it has targets
            subprocess.run(["tgtadm", "-C", str(control), "--op", "delete", "--mode", "system"], check=False,
                           timeout=30)
        print(f"----- dav host log -----\n{process.tail(40)}")


def dav(host, username: str) -> requests.Session:
    session = requests.Session()
    session.auth = (username, PASSWORDS[username])
    return session


def raw_status(host, method: str, path: str, username: str = "teacher") -> int:
    """A request with ``path`` sent exactly as written (no client normalizing ``..`` or quoting)."""
    import base64

    parts = urlsplit(host.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    token = base64.b64encode(f"{username}:{PASSWORDS[username]}".encode()).decode()
    connection.putrequest(method, path, skip_accept_encoding=True)
    connection.putheader("Authorization", f"Basic {token}")
    connection.putheader("Content-Length", "1")
    connection.endheaders(b"x")
    status = connection.getresponse().status
    connection.close()
    return status


def test_litmus_basic_copymove_props_and_locks_pass(host):
    if shutil.which("litmus") is None:
        pytest.skip("litmus is not installed; the test command (tests/run.sh) installs it")
    url = f"{host.url}/sc/dav/home/teacher/"
    result = subprocess.run(["litmus", url, "teacher", PASSWORDS["teacher"]], capture_output=True, text=True,
                            timeout=240, check=False, env={"TESTS": "basic copymove props locks", "PATH": "/usr/bin"})
    print(result.stdout[-6000:])
    summaries = {suite: (int(run), int(failed)) for suite, run, failed in re.findall(
        r"<- summary for `(\w+)': of (\d+) tests run: \d+ passed, (\d+) failed", result.stdout)}
    assert set(summaries) == {"basic", "copymove", "props", "locks"}, result.stdout[-3000:]
    assert all(failed == 0 for _, failed in summaries.values()), summaries
    assert result.returncode == 0


def _chunks(seed: bytes, digest):
    block = hashlib.sha256(seed).digest() * (PIECE // 32)
    for index in range(BIG // PIECE):
        piece = index.to_bytes(4, "big") + block[4:]
        digest.update(piece)
        yield piece


def test_a_100_mib_file_round_trips_with_its_sha256(host):
    session = dav(host, "teacher")
    url = f"{host.url}/sc/dav/home/teacher/big.bin"
    sent = hashlib.sha256()
    started = time.monotonic()
    response = session.put(url, data=_chunks(b"dav", sent), timeout=300)
    assert response.status_code == 201, response.text[:500]
    uploaded = time.monotonic()
    listing = session.request("PROPFIND", f"{host.url}/sc/dav/home/teacher/", headers={"Depth": "1"}, timeout=30)
    assert listing.status_code == 207
    assert re.search(r"big\.bin</\w+:href>.*?getcontentlength>104857600<", listing.text, re.S), listing.text[:2000]
    received, size = hashlib.sha256(), 0
    with session.get(url, stream=True, timeout=300) as download:
        assert download.status_code == 200
        for piece in download.iter_content(PIECE):
            received.update(piece)
            size += len(piece)
    print(f"100 MiB: PUT {uploaded - started:.1f} s, GET {time.monotonic() - uploaded:.1f} s")
    assert size == BIG and received.hexdigest() == sent.hexdigest()


def test_other_homes_and_other_branches_are_refused(host):
    student, other = dav(host, "student"), dav(host, "other")
    base = f"{host.url}/sc/dav"
    assert student.put(f"{base}/home/student/mine.txt", data=b"student's", timeout=30).status_code == 201
    assert dav(host, "teacher").put(f"{base}/groups/edu.s1.c1/notes.txt", data=b"for the class",
                                    timeout=30).status_code == 201
    # another account's home: not found, whoever asks, for reading and writing
    assert other.get(f"{base}/home/student/mine.txt", timeout=30).status_code == 404
    assert student.request("PROPFIND", f"{base}/home/teacher/", headers={"Depth": "1"}, timeout=30).status_code \
        == 404
    assert other.put(f"{base}/home/student/x.txt", data=b"x", timeout=30).status_code == 404
    # another branch's share: not found
    assert other.get(f"{base}/groups/edu.s1.c1/notes.txt", timeout=30).status_code == 404
    assert student.request("PROPFIND", f"{base}/groups/edu.s2/", headers={"Depth": "0"}, timeout=30).status_code \
        == 404
    # the class reads its share and may not write it (kind "class": share read)
    assert student.get(f"{base}/groups/edu.s1.c1/notes.txt", timeout=30).content == b"for the class"
    assert student.put(f"{base}/groups/edu.s1.c1/notes.txt", data=b"mine", timeout=30).status_code == 403
    assert student.request("PROPFIND", f"{base}/groups/edu.s1/", headers={"Depth": "0"}, timeout=30).status_code \
        == 404, "a student of edu.s1.c1 does not reach the school's share above the class"
    listing = student.request("PROPFIND", f"{base}/groups/", headers={"Depth": "1"}, timeout=30).text
    assert "edu.s1.c1" in listing and "edu.s2" not in listing and "edu.s1/" not in listing
    wrong = requests.get(f"{base}/home/student/", auth=("student", "wrong"), timeout=30)
    assert wrong.status_code == 401 and "Basic" in wrong.headers["WWW-Authenticate"]


def test_a_put_past_the_quota_is_507_with_the_numbers(host):
    session = dav(host, "other")
    base = f"{host.url}/sc/dav/groups/edu.s2"
    assert session.put(f"{base}/first.bin", data=b"\0" * (100 * 2**20), timeout=120).status_code == 201
    refused = session.put(f"{base}/second.bin", data=b"\0" * (60 * 2**20), timeout=120)
    assert refused.status_code == 507
    assert "groups/edu.s2/" in refused.text and f"{QUOTA_MB} MiB quota" in refused.text
    assert session.get(f"{base}/second.bin", timeout=30).status_code == 404, "nothing of it was kept"


@pytest.mark.parametrize("path", ["/sc/dav/home/teacher/../student/x", "/sc/dav/home/teacher/a%00b",
                                  "/sc/dav/home/teacher/" + "n" * 300, "/sc/dav/home/teacher/%2e%2e/student/x"])
def test_bad_names_are_refused(host, path):
    assert raw_status(host, "PUT", path) == 400


def test_the_portal_links_my_files_to_the_sc(host):
    student = ConsoleClient(host.url, "student", PASSWORDS["student"])
    wait_for("the SC to be registered", lambda: "/sc/dav/home/student/" in student.page("/portal/"), timeout=60)
    assert f'href="{host.url}/sc/dav/home/student/"' in student.page("/portal/")


LOCK_BODY = (b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
             b'</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>dav test</D:owner></D:lockinfo>')


def test_a_lock_outlives_a_restart_of_the_sc(host):
    session = dav(host, "teacher")
    url = f"{host.url}/sc/dav/home/teacher/locked.txt"
    assert session.put(url, data=b"v1", timeout=30).status_code == 201
    locked = session.request("LOCK", url, data=LOCK_BODY, headers={"Timeout": "Second-3600",
                                                                     "Content-Type": "application/xml"}, timeout=30)
    assert locked.status_code == 200, locked.text
    token = locked.headers["Lock-Token"]
    host.stop()
    host.start().wait_listening()
    assert session.put(url, data=b"v2", timeout=30).status_code == 423, "the lock is still there after the restart"
    assert session.put(url, data=b"v2", headers={"If": f"({token})"}, timeout=30).status_code == 204
    assert session.request("UNLOCK", url, headers={"Lock-Token": token}, timeout=30).status_code == 204
    assert session.get(url, timeout=30).content == b"v2"
