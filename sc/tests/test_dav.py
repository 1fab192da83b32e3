"""The SC's WebDAV shares in-process: the decision on each request (sc.dav.access), the login cache (sc.dav.logins),
and the real wsgidav application (sc.dav.app) called through WSGI with a stand-in for the CLC's answer: listings
narrowed to what the login reaches, other homes and branches not found, the quota counted on a streamed upload,
names refused, symbolic links never followed."""

from __future__ import annotations

import base64
import io
import sys
from urllib.parse import quote

import pytest

from luhyaapi.client import RemoteError
from luhyaapi.shares import ShareGrant, ShareLogin
from sc.dav.access import Refused, check_path, check_request
from sc.dav.app import dav_application, with_dav
from sc.dav.logins import LoginChecker, LoginUnavailable

ALICE = ShareLogin(authenticated=True, username="alice", owner_group="edu.s1",
                   shares=(ShareGrant(path="edu.s1", read=True, write=True),
                           ShareGrant(path="edu.s1.c1", read=True, write=False)))
QUOTA = 1024 * 1024


def answer_for(login: ShareLogin) -> dict:
    return login.model_dump(mode="json")


# The decision ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "destination", "status"), [
    ("PROPFIND", "/home/alice/", None, 0),
    ("PUT", "/home/alice/notes.txt", None, 0),
    ("PROPFIND", "/home/bob/", None, 404),            # another account's home is not revealed
    ("GET", "/home/bob/notes.txt", None, 404),
    ("PROPFIND", "/groups/edu.s1.c1/", None, 0),       # a share in her authority, read only
    ("PUT", "/groups/edu.s1.c1/x", None, 403),
    ("LOCK", "/groups/edu.s1.c1/x", None, 403),
    ("PROPPATCH", "/groups/edu.s1.c1/x", None, 403),
    ("MKCOL", "/groups/edu.s1/new", None, 0),
    ("PROPFIND", "/groups/edu.s2/", None, 404),        # another branch
    ("PROPFIND", "/groups/edu/", None, 404),           # the group above her own
    ("PROPFIND", "/groups/edu.s1x/", None, 404),       # a sibling sharing her prefix
    ("PROPFIND", "/", None, 0),
    ("MKCOL", "/home/carol/", None, 404),
    ("MKCOL", "/groups/", None, 403),                  # the listings are read only
    ("DELETE", "/home/", None, 403),
    ("COPY", "/groups/edu.s1.c1/a", "/home/alice/a", 0),  # COPY reads its source
    ("COPY", "/home/alice/a", "/groups/edu.s1.c1/a", 403),
    ("MOVE", "/groups/edu.s1.c1/a", "/home/alice/a", 403),  # MOVE changes its source
    ("MOVE", "/home/alice/a", "/home/bob/a", 404),
    ("PROPFIND", "/elsewhere/", None, 404),
])
def test_each_method_needs_read_or_write_where_it_acts(method, path, destination, status):
    if status:
        with pytest.raises(Refused) as refused:
            check_request(ALICE, method, path, destination)
        assert refused.value.status == status
    else:
        check_request(ALICE, method, path, destination)


@pytest.mark.parametrize(("path", "why"), [
    ("/home/alice/../bob/x", "'..'"), ("/home/alice/./x", "'..'"), ("/home/alice/a\x00b", "NUL"),
    ("/home/alice/a\nb", "control"), ("/home/alice/" + "x" * 256, "255 bytes"),
    ("/home/alice/" + "\xc3\xa9" * 128, "255 bytes"),  # 128 é are 256 bytes of UTF-8
    ("/home/alice/" + "a/" * 2100, "4096"),
])
def test_bad_names_are_refused_with_400_naming_why(path, why):
    with pytest.raises(Refused) as refused:
        check_path(path)
    assert refused.value.status == 400 and why in str(refused.value)


def test_a_name_of_255_bytes_is_a_name():
    assert check_path("/home/alice/" + "x" * 255)[-1] == "x" * 255


# The login cache -------------------------------------------------------------------------------------------------

class FakeClc:
    def __init__(self, password: str = "right") -> None:
        self.password = password
        self.calls: list[tuple[str, str]] = []
        self.down = False

    def __call__(self, username: str, password: str, address: str) -> dict:
        self.calls.append((username, address))
        if self.down:
            raise RemoteError("http://clc/", 0, "connection refused")
        if password != self.password:
            return {"authenticated": False, "detail": "wrong user name or password"}
        return answer_for(ALICE)


def test_a_good_login_is_kept_briefly_and_a_refused_one_never():
    clc, now = FakeClc(), [0.0]
    checker = LoginChecker(clc, cache_seconds=30, clock=lambda: now[0])
    assert checker.check("alice", "right", "10.0.0.5") == ALICE
    assert checker.check("alice", "right", "10.0.0.5") == ALICE
    assert len(clc.calls) == 1, "the second request of a client is answered from the cache"
    assert checker.check("alice", "wrong", "10.0.0.5") is None
    assert checker.check("alice", "wrong", "10.0.0.5") is None
    assert len(clc.calls) == 3, "every wrong password reaches the CLC and its throttle"
    assert clc.calls[-1] == ("alice", "10.0.0.5"), "the client's address goes with it"
    now[0] = 31
    checker.check("alice", "right", "10.0.0.5")
    assert len(clc.calls) == 4, "a kept login is asked again after cache_seconds"


def test_a_password_changed_at_the_clc_is_asked_again():
    clc = FakeClc()
    checker = LoginChecker(clc)
    checker.check("alice", "right", "")
    clc.password = "new"
    assert checker.check("alice", "new", "") == ALICE
    assert len(clc.calls) == 2


def test_an_unreachable_clc_is_unavailable_not_a_wrong_password():
    clc = FakeClc()
    clc.down = True
    with pytest.raises(LoginUnavailable):
        LoginChecker(clc).check("alice", "right", "")


# The application ----------------------------------------------------------------------------------------------------

class Chunks(io.RawIOBase):
    """A request body of ``size`` bytes read in pieces, with no Content-Length (as a chunked upload arrives)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return b"z" * size


def call(app, method: str, path: str, body: bytes | io.RawIOBase = b"", user: str = "alice",
         password: str = "right", **headers) -> tuple[int, str]:
    raw = path.encode().decode("latin-1")  # WSGI carries each byte of the path as one character
    environ = {"REQUEST_METHOD": method, "PATH_INFO": raw, "SCRIPT_NAME": "", "QUERY_STRING": "",
               "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_HOST": "localhost", "REMOTE_ADDR": "10.0.0.5", "wsgi.url_scheme": "http",
               "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
               "wsgi.run_once": False,
               "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    if isinstance(body, bytes):
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
    else:
        environ["wsgi.input"] = body
    for name, value in headers.items():
        environ[name if name.startswith("CONTENT_") else "HTTP_" + name.upper()] = value
    status = []
    chunks = app(environ, lambda line, headers, exc_info=None: status.append(line))
    text = b"".join(chunks).decode(errors="replace")
    if hasattr(chunks, "close"):
        chunks.close()
    return int(status[0].split()[0]), text


@pytest.fixture
def dav(tmp_path):
    clc = FakeClc()

    def django(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"django"]

    app = with_dav(django, dav_application(tmp_path, LoginChecker(clc), QUOTA))
    app.root = tmp_path / "sc" / "dav"
    return app


def _hrefs(text: str) -> list[str]:
    return sorted(part.split("<", 1)[0] for part in text.split(":href>")[1::2])


def test_other_paths_reach_django_and_the_mount_needs_a_login(dav):
    assert call(dav, "GET", "/sc/api/1.0/ping/") == (200, "django")
    assert call(dav, "PROPFIND", "/sc/dav/", password="wrong", Depth="0")[0] == 401


def test_the_listings_show_only_what_the_login_reaches(dav):
    (dav.root / "home" / "bob").mkdir(parents=True)
    (dav.root / "groups" / "edu.s2").mkdir(parents=True)
    assert _hrefs(call(dav, "PROPFIND", "/sc/dav/", Depth="1")[1]) == ["/sc/dav/", "/sc/dav/groups/",
                                                                       "/sc/dav/home/"]
    assert _hrefs(call(dav, "PROPFIND", "/sc/dav/home/", Depth="1")[1]) == ["/sc/dav/home/", "/sc/dav/home/alice/"]
    assert _hrefs(call(dav, "PROPFIND", "/sc/dav/groups/", Depth="1")[1]) == [
        "/sc/dav/groups/", "/sc/dav/groups/edu.s1.c1/", "/sc/dav/groups/edu.s1/"]
    assert call(dav, "PROPFIND", "/sc/dav/home/bob/", Depth="0")[0] == 404
    assert call(dav, "PROPFIND", "/sc/dav/groups/edu.s2/", Depth="0")[0] == 404


def test_a_file_round_trips_in_the_home_and_the_share(dav):
    assert call(dav, "PUT", "/sc/dav/home/alice/a.txt", b"hello")[0] == 201
    assert call(dav, "GET", "/sc/dav/home/alice/a.txt") == (200, "hello")
    assert (dav.root / "home" / "alice" / "a.txt").read_bytes() == b"hello"
    assert call(dav, "PUT", "/sc/dav/groups/edu.s1/b.txt", b"group")[0] == 201
    assert call(dav, "PUT", "/sc/dav/groups/edu.s1.c1/b.txt", b"no")[0] == 403
    assert not (dav.root / "groups" / "edu.s1.c1" / "b.txt").exists()


def test_a_streamed_upload_past_the_quota_is_507_and_leaves_the_old_file(dav):
    assert call(dav, "PUT", "/sc/dav/home/alice/big", b"old" * 1000)[0] == 201
    assert call(dav, "PUT", "/sc/dav/home/alice/other", b"x" * (QUOTA // 2))[0] == 201
    status, text = call(dav, "PUT", "/sc/dav/home/alice/big", Chunks(QUOTA // 2 + 4096))
    assert status == 507, text
    assert (dav.root / "home" / "alice" / "big").read_bytes() == b"old" * 1000
    status, _ = call(dav, "PUT", "/sc/dav/home/alice/new", Chunks(QUOTA))
    assert status == 507
    home = sorted(path.name for path in (dav.root / "home" / "alice").iterdir())
    assert home == ["big", "other"], "no partial upload and no empty file are left behind"
    assert call(dav, "PUT", "/sc/dav/home/alice/small", Chunks(1000))[0] == 201


def test_a_content_length_past_the_quota_is_refused_before_the_body(dav):
    status, text = call(dav, "PUT", "/sc/dav/groups/edu.s1/huge", Chunks(0), CONTENT_LENGTH=str(QUOTA + 1))
    assert status == 507
    assert "groups/edu.s1/" in text and "sc.dav_quota_mb" in text


def test_a_copy_into_a_full_share_is_507(dav):
    assert call(dav, "PUT", "/sc/dav/home/alice/a", b"x" * (QUOTA // 2 + 10))[0] == 201
    destination = "http://localhost/sc/dav/groups/edu.s1/a"
    assert call(dav, "COPY", "/sc/dav/home/alice/a", Destination=destination)[0] == 201
    destination = "http://localhost/sc/dav/groups/edu.s1/b"
    assert call(dav, "COPY", "/sc/dav/home/alice/a", Destination=destination)[0] == 507


@pytest.mark.parametrize("path", ["/sc/dav/home/alice/../bob/x", "/sc/dav/home/alice/a\x00b",
                                  "/sc/dav/home/alice/" + "n" * 300])
def test_bad_names_never_reach_wsgidav(dav, path):
    assert call(dav, "PUT", path, b"x")[0] == 400
    assert not (dav.root / "home" / "bob").exists()


def test_a_destination_outside_the_mount_or_with_dot_dot_is_refused(dav):
    call(dav, "PUT", "/sc/dav/home/alice/a", b"x")
    for destination in ("http://localhost/elsewhere/a", "http://localhost/sc/dav/home/alice/%2E%2E/bob/a"):
        assert call(dav, "MOVE", "/sc/dav/home/alice/a", Destination=destination)[0] == 400
    assert call(dav, "MOVE", "/sc/dav/home/alice/a", Destination=f"http://localhost/sc/dav/home/{quote('bob')}/a"
                )[0] == 404


def test_symbolic_links_are_never_followed_out_of_the_root(dav, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    call(dav, "MKCOL", "/sc/dav/home/alice/d")
    (dav.root / "home" / "alice" / "link").symlink_to(secret)
    (dav.root / "home" / "alice" / "dirlink").symlink_to(tmp_path)
    status, text = call(dav, "GET", "/sc/dav/home/alice/link")
    assert status in (403, 404) and "not yours" not in text
    assert call(dav, "PROPFIND", "/sc/dav/home/alice/dirlink/", Depth="1")[0] in (403, 404)
    listing = _hrefs(call(dav, "PROPFIND", "/sc/dav/home/alice/", Depth="1")[1])
    assert listing == ["/sc/dav/home/alice/", "/sc/dav/home/alice/d/"]
    assert call(dav, "PUT", "/sc/dav/home/alice/link", b"overwrite")[0] in (403, 404)
    assert secret.read_text() == "not yours"


def test_a_browser_gets_a_page_of_the_folder_and_its_style_sheet(dav):
    call(dav, "PUT", "/sc/dav/home/alice/report.txt", b"x")
    (dav.root / "home" / "bob").mkdir(parents=True)
    status, page = call(dav, "GET", "/sc/dav/home/alice/")
    assert status == 200 and "report.txt" in page
    status, page = call(dav, "GET", "/sc/dav/home/")
    assert status == 200 and "alice" in page and "bob" not in page
    assert call(dav, "GET", "/sc/dav/:dir_browser/style.css")[0] == 200
    assert call(dav, "PUT", "/sc/dav/:dir_browser/style.css", b"x")[0] == 403
