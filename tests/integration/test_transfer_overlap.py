"""The pieces that make image copies fast keep them correct: the helper-thread sha256 (same digest, errors raised,
bounded queue), early writeback (and its clean fall-back), and complete files sent through the web server's file
wrapper by the real web server of a host, with ``Range``, ``If-Range``, ``HEAD`` and 416 as before."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from django.http import FileResponse
from waitress.buffers import ReadOnlyFileBasedBuffer

import luhyaapi.transfer as transfer
from daemons.host import web_server
from luhyaapi.ranges import FileRange, StreamedRange, file_response
from luhyaapi.signing import canonical_path, sign_headers
from luhyaapi.transfer import BackgroundHash, Writeback, download, upload_file
from luhyaapi.trust import own_key

MiB = 1024 * 1024
IMAGE = "img-0000abcd"


def test_the_background_hash_is_the_hash_of_every_chunk_in_order():
    chunks = [os.urandom(n) for n in (1, 4 * MiB, 0, 3 * MiB + 7, 12345)]
    background = BackgroundHash(hashlib.sha256())
    for chunk in chunks:
        background.feed(chunk)
    background.finish()
    background.finish()
    assert background.hasher.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert background.hashed == sum(map(len, chunks))


def test_an_error_of_the_hashing_thread_reaches_the_feeder():
    background = BackgroundHash(hashlib.sha256())
    background.feed("not bytes")  # hashlib refuses str: the helper thread fails
    with pytest.raises(TypeError):
        for _ in range(100):
            background.feed(b"x")
            time.sleep(0.01)
    with pytest.raises(TypeError):
        background.finish()


def test_feeding_blocks_while_the_hashing_thread_is_behind():
    class SlowHash:
        def __init__(self) -> None:
            self.release = threading.Event()
            self.seen = []

        def update(self, chunk) -> None:
            self.release.wait()
            self.seen.append(chunk)

    slow = SlowHash()
    background = BackgroundHash(slow)
    fed = []
    feeder = threading.Thread(target=lambda: [fed.append(background.feed(b"c")) for _ in range(20)], daemon=True)
    feeder.start()
    time.sleep(0.3)
    # One chunk in the thread's hands, the queue full behind it: the feeder waits rather than piling up memory.
    assert len(fed) == transfer.HASH_QUEUE_CHUNKS + 1
    slow.release.set()
    feeder.join(5)
    background.finish()
    assert len(slow.seen) == 20


def test_writeback_is_started_for_each_written_stretch(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(transfer, "_sync_file_range", lambda fd, offset, length, flags: calls.append(
        (offset, length, flags)) or 0)
    with open(tmp_path / "f", "wb") as file:
        writeback = Writeback(file.fileno(), start=MiB)
        for end in range(2 * MiB, 30 * MiB, 2 * MiB):
            writeback.written(end)
    step = transfer.WRITEBACK_BYTES
    # Each call goes on where the last one stopped, covers at least a step, and at most a step is left uncovered.
    assert calls[0][0] == MiB
    assert all(later[0] == earlier[0] + earlier[1] for earlier, later in zip(calls, calls[1:], strict=False))
    assert all(length >= step and flags == 2 for _offset, length, flags in calls)
    assert 28 * MiB - sum(calls[-1][:2]) < step


@pytest.mark.parametrize("available", [False, True])
def test_without_sync_file_range_or_when_it_fails_a_download_still_lands_whole(tmp_path, monkeypatch, available):
    calls = []

    def failing(fd, offset, length, flags):
        calls.append(offset)
        return -1

    monkeypatch.setattr(transfer, "_sync_file_range", failing if available else None)
    with open(tmp_path / "f", "wb") as file:
        writeback = Writeback(file.fileno())
        for end in range(0, 64 * MiB, 4 * MiB):
            writeback.written(end)
    assert len(calls) == (1 if available else 0)  # tried once, then left alone


def test_the_real_sync_file_range_is_found_on_linux():
    if not os.uname().sysname == "Linux":
        pytest.skip("sync_file_range is Linux's")
    assert transfer._sync_file_range is not None


def test_a_file_range_reads_only_its_bytes_and_seeks_within_them(tmp_path):
    path = tmp_path / "f"
    data = os.urandom(10000)
    path.write_bytes(data)
    closed = []
    body = FileRange(open(path, "rb", buffering=0), 100, 1099, on_close=lambda: closed.append(True))
    assert (body.read(10), body.tell()) == (data[100:110], 10)
    assert body.seek(0, os.SEEK_END) == 1000
    assert body.read() == b""
    body.seek(-5, os.SEEK_CUR)
    assert body.read(100) == data[1095:1100]
    body.seek(500)
    assert body.read() == data[600:1100]
    body.close()
    body.close()
    assert closed == [True]


def test_going_back_into_the_last_read_is_answered_from_memory_not_the_file(tmp_path, monkeypatch):
    path = tmp_path / "f"
    data = os.urandom(100000)
    path.write_bytes(data)
    body = FileRange(open(path, "rb", buffering=0), 1000, 90999)
    preads = []
    original = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, at: preads.append((n, at)) or original(fd, n, at))
    # As waitress sends: read what the socket could hold, send part of it, seek to where the socket stopped.
    sent = []
    while (chunk := body.read(40000)):
        taken = bytes(chunk[:15000])
        sent.append(taken)
        body.seek(len(taken) - len(chunk), os.SEEK_CUR)
    assert b"".join(sent) == data[1000:91000]
    assert preads == [(40000, 1000), (40000, 41000), (10000, 81000)]


def test_a_file_shorter_than_its_range_is_an_error_not_a_short_answer(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    body = FileRange(open(path, "rb", buffering=0), 0, 199)
    assert body.read(100) == b"x" * 100
    with pytest.raises(OSError, match="ends at 100"):
        body.read(100)


def test_a_complete_file_is_a_file_response_and_an_arriving_one_is_streamed(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abcdef")
    whole = file_response(FileRange(open(path, "rb", buffering=0), 1, 4), size=6, sha256="s" * 64, partial=True)
    assert isinstance(whole, FileResponse)
    assert (whole.status_code, whole["Content-Length"], whole["Content-Range"]) == (206, "4", "bytes 1-4/6")
    assert b"".join(whole.streaming_content) == b"bcde"
    whole.file_to_stream.close()
    arriving = file_response(StreamedRange(iter([b"ab", b"c"]), 0, 2), size=6, sha256="s" * 64, partial=True)
    assert not isinstance(arriving, FileResponse)
    assert b"".join(arriving.streaming_content) == b"abc"


# The product's web server (waitress with its file wrapper) in front of walrus.


@pytest.fixture
def host(tmp_path, settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, data_dir=tmp_path / "data")
    server = web_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()
    thread.join(10)


def signed_get(url: str, **headers) -> requests.Response:
    host, _, path = url.split("://", 1)[1].partition("/")
    signed = sign_headers(own_key(), "GET", host, canonical_path("/" + path), b"")
    return requests.get(url, headers=signed | headers, timeout=30)


@pytest.mark.database
@pytest.mark.django_db(transaction=True)
def test_walrus_behind_waitress_sends_whole_files_and_ranges_from_the_file(host, tmp_path, monkeypatch):
    wrapped = []
    original_prepare = ReadOnlyFileBasedBuffer.prepare
    monkeypatch.setattr(ReadOnlyFileBasedBuffer, "prepare",
                        lambda self, size=None: wrapped.append(size) or original_prepare(self, size))
    data = os.urandom(9 * MiB + 333)
    source = tmp_path / "disk.img"
    source.write_bytes(data)
    digest = upload_file(host, own_key(), source, IMAGE)["sha256"]
    url = f"{host}/walrus/api/1.0/images/{IMAGE}/versions/1/data"
    whole = signed_get(url)
    assert (whole.status_code, whole.content, whole.headers["X-Educloud-Sha256"]) == (200, data, digest)
    assert whole.headers["Content-Length"] == str(len(data))
    part = signed_get(url, Range="bytes=5000000-")
    assert (part.status_code, part.headers["Content-Range"]) == (206, f"bytes 5000000-{len(data) - 1}/{len(data)}")
    assert part.content == data[5000000:]
    middle = signed_get(url, Range="bytes=7-16", **{"If-Range": f'"{digest}"'})
    assert (middle.status_code, middle.content) == (206, data[7:17])
    stale = signed_get(url, Range="bytes=7-16", **{"If-Range": '"' + "0" * 64 + '"'})
    assert (stale.status_code, stale.content) == (200, data)
    # Each GET was sent by waitress's file wrapper, straight from the file, bounded by its Content-Length.
    assert wrapped == [len(data), len(data) - 5000000, 10, len(data)]
    past = signed_get(url, Range=f"bytes={len(data)}-")
    assert (past.status_code, past.headers["Content-Range"]) == (416, f"bytes */{len(data)}")
    path = f"/walrus/api/1.0/images/{IMAGE}/versions/1/data"
    head = requests.head(url, headers=sign_headers(own_key(), "HEAD", host.split("://")[1], path, b""), timeout=30)
    assert (head.status_code, head.headers["Content-Length"], head.content) == (200, str(len(data)), b"")
    dest = tmp_path / "back.img"
    assert download(url, dest, key=own_key()) == digest
    assert Path(dest).read_bytes() == data
