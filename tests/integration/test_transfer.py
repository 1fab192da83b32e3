"""Transfers to and from a live walrus (``luhyaapi.transfer``): streamed round trips, resumes after connections
really cut mid-body (by a raw socket or a proxy that drops the line), checksum failures that leave nothing behind,
and formats detected on the way in."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings

from luhyaapi.client import RoleClient
from luhyaapi.keys import HostKey
from luhyaapi.signing import canonical_path, sign_headers
from luhyaapi.transfer import ChecksumMismatch, TransferError, download, throttled, upload_file
from luhyaapi.trust import own_key
from tests.keys import new_key

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("no_lingering_connections")]


IMAGE = "img-0000abcd"
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def store(settings, tmp_path) -> Path:
    settings.EDUCLOUD = replace(settings.EDUCLOUD, data_dir=tmp_path / "data")
    return tmp_path / "data" / "walrus"


@pytest.fixture
def walrus_url(live_server) -> str:
    return live_server.url


@pytest.fixture
def key() -> HostKey:
    """The test host's own key (a new one in each test's data dir): a CLC's, which walrus takes."""
    return own_key()


def random_file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_url(base: str, version: object = "current", image_id: str = IMAGE) -> str:
    return f"{base}/walrus/api/1.0/images/{image_id}/versions/{version}/data"


def walrus_upload(base: str, key: HostKey, upload_id: str) -> dict:
    return RoleClient(base, key).get(f"/walrus/api/1.0/uploads/{upload_id}/")


def wait_for_offset(base: str, key: HostKey, upload_id: str, offset: int, timeout: float = 20) -> int:
    """Walrus notices a cut connection when its read comes back empty: wait until it has saved what it got."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = walrus_upload(base, key, upload_id)["offset"]
        if found >= offset:
            return found
        time.sleep(0.05)
    return walrus_upload(base, key, upload_id)["offset"]


class CuttingProxy:
    """A TCP proxy to walrus that cuts the first connection that carries more than ``cut_after`` bytes in one
    direction (``up``: to walrus, ``down``: from walrus): it forwards exactly that many, then closes both sides."""

    def __init__(self, target: str, cut_after: int, direction: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname, parts.port)
        self.cut_after = cut_after
        self.direction = direction
        self.cuts = 0
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.target)
            self.sockets += [downstream, upstream]
            threading.Thread(target=self.pump, args=(downstream, upstream, "up"), daemon=True).start()
            threading.Thread(target=self.pump, args=(upstream, downstream, "down"), daemon=True).start()

    def pump(self, source: socket.socket, sink: socket.socket, direction: str) -> None:
        carried = 0
        try:
            while data := source.recv(256 * 1024):
                with self.lock:
                    cut = direction == self.direction and not self.cuts and carried + len(data) > self.cut_after
                    if cut:
                        self.cuts += 1
                if cut:
                    sink.sendall(data[:self.cut_after - carried])
                    for end in (source, sink):
                        end.shutdown(socket.SHUT_RDWR)
                        end.close()
                    return
                sink.sendall(data)
                carried += len(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """Stop accepting and end every connection still open, so no request of the test outlives it."""
        self.listener.close()
        for end in self.sockets:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()


@pytest.fixture
def proxy(walrus_url):
    made = []

    def make(cut_after: int, direction: str) -> CuttingProxy:
        made.append(CuttingProxy(walrus_url, cut_after, direction))
        return made[-1]

    yield make
    for one in made:
        one.close()


def test_a_file_goes_up_and_comes_back_with_the_same_sha256(walrus_url, key, tmp_path):
    source = tmp_path / "disk.img"
    digest = random_file(source, 5 * MiB + 12345)
    seen = []
    stored = upload_file(walrus_url, key, source, IMAGE, progress=lambda done, total: seen.append(done),
                         piece_bytes=2 * MiB)
    assert stored == {"image_id": IMAGE, "version": 1, "size": 5 * MiB + 12345, "sha256": digest, "format": "raw"}
    assert seen[-1] == 5 * MiB + 12345 and seen == sorted(seen)
    dest = tmp_path / "cache" / "disk.img"
    assert download(data_url(walrus_url), dest, key=key) == digest
    assert file_sha(dest) == digest
    assert not Path(f"{dest}.part").exists()


def test_a_file_larger_than_djangos_memory_limit_goes_up_in_one_streamed_put(walrus_url, key, tmp_path, monkeypatch):
    source = tmp_path / "big.img"
    size = 2 * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 4321
    digest = random_file(source, size)
    puts = []
    original_put = requests.Session.put
    monkeypatch.setattr(requests.Session, "put", lambda self, url, **kw: (puts.append(url), original_put(self, url,
                                                                                                          **kw))[1])
    assert upload_file(walrus_url, key, source, IMAGE, sha256=digest)["sha256"] == digest
    assert len(puts) == 1


def test_an_upload_cut_mid_body_by_the_network_resumes_from_walruss_offset(walrus_url, key, tmp_path):
    source = tmp_path / "disk.img"
    size = 4 * MiB + 77
    digest = random_file(source, size)
    client = RoleClient(walrus_url, key)
    upload_id = client.post("/walrus/api/1.0/uploads/", {"image_id": IMAGE, "size": size})["upload_id"]
    sent = 1 * MiB + 1000
    path = f"/walrus/api/1.0/uploads/{upload_id}/data"
    parts = urlsplit(walrus_url)
    headers = sign_headers(key, "PUT", parts.netloc, canonical_path(path, "offset=0"), None)
    with socket.create_connection((parts.hostname, parts.port)) as raw:
        head = [f"PUT {path}?offset=0 HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {size}",
                "Content-Type: application/octet-stream", *(f"{name}: {value}" for name, value in headers.items())]
        raw.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        raw.sendall(source.read_bytes()[:sent])
        raw.shutdown(socket.SHUT_RDWR)
    assert wait_for_offset(walrus_url, key, upload_id, sent) == sent
    seen = []
    stored = upload_file(walrus_url, key, source, IMAGE, upload_id=upload_id,
                         progress=lambda done, total: seen.append(done))
    assert seen[0] == sent
    assert (stored["sha256"], stored["size"]) == (digest, size)
    dest = tmp_path / "back.img"
    download(data_url(walrus_url), dest, key=key, expected_sha256=digest)
    assert file_sha(dest) == digest


def test_upload_file_goes_on_after_the_network_drops_its_connection(walrus_url, key, tmp_path, proxy):
    cutter = proxy(cut_after=1 * MiB + 333, direction="up")
    source = tmp_path / "disk.img"
    digest = random_file(source, 3 * MiB + 5)
    stored = upload_file(cutter.url, key, source, IMAGE)
    assert cutter.cuts == 1
    assert stored["sha256"] == digest
    dest = tmp_path / "back.img"
    assert download(data_url(walrus_url), dest, key=key) == digest


def test_a_download_cut_mid_body_resumes_with_a_range(walrus_url, key, tmp_path, monkeypatch):
    source = tmp_path / "disk.img"
    digest = random_file(source, 3 * MiB + 999)
    upload_file(walrus_url, key, source, IMAGE)
    dest = tmp_path / "cache" / "disk.img"
    dest.parent.mkdir()
    url = data_url(walrus_url)
    parts = urlsplit(url)
    headers = sign_headers(key, "GET", parts.netloc, canonical_path(parts.path), b"")
    kept = 1 * MiB + 17
    with socket.create_connection((parts.hostname, parts.port)) as raw:
        head = [f"GET {parts.path} HTTP/1.1", f"Host: {parts.netloc}",
                *(f"{name}: {value}" for name, value in headers.items())]
        raw.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        received = b""
        while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < kept:
            received += raw.recv(65536)
        status, _, body = received.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 200")
    Path(f"{dest}.part").write_bytes(body[:kept])
    ranges = []
    original_get = requests.Session.get
    monkeypatch.setattr(requests.Session, "get", lambda self, url, **kw: (ranges.append(kw["headers"].get("Range")),
                                                                          original_get(self, url, **kw))[1])
    assert download(url, dest, key=key) == digest
    assert ranges == [f"bytes={kept}-"]
    assert file_sha(dest) == digest


def test_a_partial_download_that_is_already_whole_is_verified_without_fetching_it_again(walrus_url, key, tmp_path,
                                                                                       monkeypatch):
    source = tmp_path / "disk.img"
    digest = random_file(source, MiB + 3)
    upload_file(walrus_url, key, source, IMAGE)
    dest = tmp_path / "back.img"
    Path(f"{dest}.part").write_bytes(source.read_bytes())
    ranges = []
    original_get = requests.Session.get
    monkeypatch.setattr(requests.Session, "get", lambda self, url, **kw: (ranges.append(kw["headers"].get("Range")),
                                                                          original_get(self, url, **kw))[1])
    assert download(data_url(walrus_url), dest, key=key) == digest
    assert ranges == [f"bytes={MiB + 3}-"]
    assert file_sha(dest) == digest


def test_download_goes_on_after_the_network_drops_its_connection(walrus_url, key, tmp_path, proxy):
    source = tmp_path / "disk.img"
    digest = random_file(source, 3 * MiB + 1)
    upload_file(walrus_url, key, source, IMAGE)
    cutter = proxy(cut_after=2 * MiB, direction="down")
    dest = tmp_path / "back.img"
    seen = []
    assert download(data_url(cutter.url), dest, key=key, expected_sha256=digest,
                    progress=lambda done, total: seen.append(done)) == digest
    assert cutter.cuts == 1
    assert file_sha(dest) == digest
    assert seen[-1] == 3 * MiB + 1


def test_a_corrupted_partial_download_fails_its_checksum_and_leaves_nothing(walrus_url, key, tmp_path):
    source = tmp_path / "disk.img"
    random_file(source, 2 * MiB)
    upload_file(walrus_url, key, source, IMAGE)
    dest = tmp_path / "back.img"
    Path(f"{dest}.part").write_bytes(b"\0" * MiB)
    with pytest.raises(ChecksumMismatch):
        download(data_url(walrus_url), dest, key=key)
    assert not dest.exists()
    assert not Path(f"{dest}.part").exists()


def test_a_download_that_is_not_the_expected_file_fails_and_leaves_nothing(walrus_url, key, tmp_path):
    source = tmp_path / "disk.img"
    random_file(source, MiB)
    upload_file(walrus_url, key, source, IMAGE)
    dest = tmp_path / "back.img"
    with pytest.raises(ChecksumMismatch) as mismatch:
        download(data_url(walrus_url), dest, key=key, expected_sha256="0" * 64)
    assert mismatch.value.expected == "0" * 64
    assert not dest.exists()
    assert not Path(f"{dest}.part").exists()


def test_an_upload_whose_sha256_is_wrong_is_refused_and_discarded_by_walrus(walrus_url, key, tmp_path):
    source = tmp_path / "disk.img"
    random_file(source, MiB)
    with pytest.raises(ChecksumMismatch):
        upload_file(walrus_url, key, source, IMAGE, sha256="1" * 64)
    assert RoleClient(walrus_url, key).get("/walrus/api/1.0/images/")["count"] == 0


def test_resuming_an_upload_with_another_file_is_refused(walrus_url, key, tmp_path):
    upload_id = RoleClient(walrus_url, key).post("/walrus/api/1.0/uploads/",
                                                         {"image_id": IMAGE, "size": 10})["upload_id"]
    source = tmp_path / "disk.img"
    random_file(source, 11)
    with pytest.raises(TransferError) as refused:
        upload_file(walrus_url, key, source, IMAGE, upload_id=upload_id)
    assert "10 bytes" in str(refused.value)


def test_transfers_signed_with_another_key_are_refused(walrus_url, key, tmp_path):
    source = tmp_path / "disk.img"
    random_file(source, 1000)
    with pytest.raises(TransferError) as refused:
        upload_file(walrus_url, new_key(key.name), source, IMAGE)
    assert refused.value.status == 403
    upload_file(walrus_url, key, source, IMAGE)
    with pytest.raises(TransferError) as refused:
        download(data_url(walrus_url), tmp_path / "back.img", key=new_key(key.name))
    assert refused.value.status == 403


def test_a_missing_version_is_a_transfer_error_not_a_retry_loop(walrus_url, key, tmp_path):
    started = time.monotonic()
    with pytest.raises(TransferError) as missing:
        download(data_url(walrus_url, 7), tmp_path / "back.img", key=key)
    assert (missing.value.status, time.monotonic() - started < 5) == (404, True)


def test_an_unreachable_walrus_is_retried_a_bounded_number_of_times(tmp_path, monkeypatch):
    monkeypatch.setattr("luhyaapi.transfer.BACKOFF_SECONDS", 0.01)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(TransferError) as gave_up:
        download(f"http://127.0.0.1:{port}/walrus/api/1.0/images/{IMAGE}/versions/1/data", tmp_path / "x",
                 key=new_key("nc-x"))
    assert "gave up after 5 retries" in str(gave_up.value)


@pytest.mark.parametrize("disk_format", ["qcow2", "vdi", "vmdk"])
def test_a_disk_made_by_qemu_img_is_stored_with_its_format(walrus_url, key, tmp_path, disk_format):
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        pytest.skip("qemu-img is not installed (tests/run.sh installs qemu-utils)")
    disk = tmp_path / f"disk.{disk_format}"
    subprocess.run([qemu_img, "create", "-q", "-f", disk_format, str(disk), "1G"], check=True, timeout=60)
    stored = upload_file(walrus_url, key, disk, IMAGE)
    assert (stored["format"], stored["sha256"]) == (disk_format, file_sha(disk))


def test_throttled_fires_at_most_the_rate_but_always_the_first_and_the_last(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("luhyaapi.transfer.time.monotonic", lambda: clock[0])
    fired = []
    progress = throttled(lambda done, total: fired.append(done), per_second=2)
    for done in range(1, 11):
        progress(done, 10)
        clock[0] += 0.125
    assert fired == [1, 5, 9, 10]
