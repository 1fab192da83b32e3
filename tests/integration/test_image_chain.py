"""The image chain walrus -> CC cluster cache -> NC cache: one walrus download shared by every NC that asks at once,
progress reported up to the CLC's task record, corrupt cache files detected and fetched again."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest
import requests
from django.core.management import CommandError, call_command

import cc.services.image_cache as cluster_cache_module
from clc.services.images import create_image, finish_upload, prepare_on_node, start_upload
from clc.services.status import StatusFolder
from clc.services.tasks import task_status
from luhyaapi.imagecache import sha256_of
from luhyaapi.transfer import download, upload_file
from luhyaapi.trust import own_key
from luhyadb.models import Image, OwnerGroup
from nc.services.images import fetch_image, node_cache
from tests.commands import run_queued
from tests.services import one_host_servers

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("no_lingering_connections")]


SIZE = 24 * 1024 * 1024 + 123


@pytest.fixture
def cloud(live_server, cloud_at, tmp_path, monkeypatch):
    """One host running every role (the live server), with walrus registered and a fresh cluster cache."""
    config = cloud_at(live_server.url, data_dir=tmp_path / "host", name="aio")
    monkeypatch.setattr(cluster_cache_module, "_caches", {})
    one_host_servers(config, live_server.url)
    return config


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "disk.raw"
    path.write_bytes(os.urandom(SIZE))
    return path


@pytest.fixture
def uploaded(cloud, image_file):
    image = create_image(name="Lab desktop", owner_group=OwnerGroup.objects.create(name="root", path="edu"))
    upload = start_upload(image, SIZE)
    upload_file(cloud.walrus_url, own_key(), image_file, image.image_id, upload_id=upload["upload_id"])
    version = finish_upload(image, upload["upload_id"])
    assert version.sha256 == sha256_of(image_file)
    return image, version


def test_many_nodes_pulling_one_image_at_once_share_one_walrus_download(cloud, uploaded, tmp_path, monkeypatch):
    image, version = uploaded
    fetches = []
    real_download = cluster_cache_module.download

    def slow_counted_download(url, dest, **kwargs):
        fetches.append(url)
        time.sleep(0.5)  # every node's request arrives while the one walrus download is still under way
        return real_download(url, dest, **kwargs)

    monkeypatch.setattr(cluster_cache_module, "download", slow_counted_download)
    url = f"{cloud.cc_url}/cc/api/1.0/images/{image.image_id}/versions/{version.number}/data"
    results: dict[int, str] = {}

    def pull(n: int) -> None:
        results[n] = download(url, tmp_path / f"nc-{n}.img", key=own_key(), expected_sha256=version.sha256)

    pullers = [threading.Thread(target=pull, args=(n,)) for n in range(6)]
    for puller in pullers:
        puller.start()
    for puller in pullers:
        puller.join(timeout=120)
    assert results == {n: version.sha256 for n in range(6)}
    assert len(fetches) == 1
    assert all(sha256_of(tmp_path / f"nc-{n}.img") == version.sha256 for n in range(6))


def test_a_node_prepares_an_image_and_the_clc_task_shows_its_progress_to_done(cloud, uploaded):
    image, version = uploaded
    reports = []

    class Reporter:
        def report_now(self, last_command=""):
            pass

        def publish(self, message):
            reports.append(message)

    task = prepare_on_node(image, "aio")
    [result] = run_queued("aio", Reporter())
    assert result.state == "SUCCESS", result.result
    StatusFolder(missed_heartbeats=3, db_touch_seconds=60).fold(reports)
    status = task_status(task.tid)
    assert (status["phase"], status["state"], status["progress"], status["done"]) == ("preparing", "done", 100, True)
    assert reports[0].state == "downloading"
    assert len(reports) < 30, "progress must be reported at a bounded rate"
    cached = node_cache().lookup(image.image_id, version.number, version.sha256)
    assert cached is not None and sha256_of(cached.path) == version.sha256


def _corrupt(path) -> None:
    with open(path, "r+b") as file:
        file.seek(SIZE // 2)
        byte = file.read(1)
        file.seek(SIZE // 2)
        file.write(bytes([byte[0] ^ 0xFF]))


def test_a_corrupted_node_cache_file_is_detected_and_fetched_again(cloud, uploaded):
    image, version = uploaded
    first = fetch_image(image.image_id, version.number, version.sha256, version.size_bytes)
    _corrupt(first.path)
    assert sha256_of(first.path) != version.sha256
    again = fetch_image(image.image_id, version.number, version.sha256, version.size_bytes)
    assert sha256_of(again.path) == version.sha256


def test_a_corrupted_cluster_cache_file_is_detected_and_fetched_again(cloud, uploaded, tmp_path):
    image, version = uploaded
    url = f"{cloud.cc_url}/cc/api/1.0/images/{image.image_id}/versions/{version.number}/data"
    download(url, tmp_path / "first.img", key=own_key(), expected_sha256=version.sha256)
    cache = cluster_cache_module.cluster_cache()
    cached = cache.files.path(image.image_id, version.number)
    # The node has every byte once the stream ends; the CC still verifies and renames its copy just after.
    deadline = time.monotonic() + 30
    while (cache.fetching() or not cached.exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    _corrupt(cached)
    assert download(url, tmp_path / "second.img", key=own_key(), expected_sha256=version.sha256) == version.sha256
    assert sha256_of(cached) == version.sha256


def test_the_cluster_cache_refuses_a_hostile_image_id(cloud, signed_client):
    response = signed_client.get("/cc/api/1.0/images/img-0000000a;ls/versions/1/data")
    assert response.status_code == 400
    assert signed_client.get("/cc/api/1.0/images/img-0000000a/versions/..;/data").status_code == 400


def test_a_partial_download_of_a_node_resumes_from_where_it_stopped(cloud, uploaded, tmp_path):
    image, version = uploaded
    url = f"{cloud.cc_url}/cc/api/1.0/images/{image.image_id}/versions/{version.number}/data"
    dest = tmp_path / "resumed.img"
    with open(tmp_path / "resumed.img.part", "wb") as part:
        part.write(open(cloud.data_dir / "walrus" / "images" / image.image_id / f"{version.number}.img", "rb")
                   .read(SIZE // 3))
    seen = []
    assert download(url, dest, key=own_key(), expected_sha256=version.sha256,
                    progress=lambda done, total: seen.append(done)) == version.sha256
    assert seen[0] > SIZE // 3
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == version.sha256


def test_the_upload_command_registers_an_image_and_shows_progress(cloud, image_file, capsys):
    OwnerGroup.objects.create(name="root", path="edu")
    call_command("upload_image", str(image_file), "--name", "Maths lab", "--usage", "desktop")
    out, err = capsys.readouterr()
    image = Image.objects.get(name="Maths lab")
    assert f"{image.image_id} version 1 (1.0.0)" in out
    assert "100.0%" in err and "MiB/s" in err
    assert image.versions.get().sha256 == sha256_of(image_file)


def test_the_upload_command_resumes_an_interrupted_upload(cloud, image_file, capsys):
    image = create_image(name="Resumed", owner_group=OwnerGroup.objects.create(name="root", path="edu"))
    upload = start_upload(image, SIZE)
    first_piece = image_file.read_bytes()[: 5 * 1024 * 1024]
    response = requests.put(f"{cloud.walrus_url}{upload['data_url']}&offset=0", data=first_piece, timeout=30)
    assert response.json()["offset"] == len(first_piece)
    call_command("upload_image", str(image_file), "--image", image.image_id, "--resume", upload["upload_id"])
    out, _err = capsys.readouterr()
    assert f"{image.image_id} version 1" in out
    assert image.versions.get().sha256 == sha256_of(image_file)


@pytest.mark.parametrize("arguments, message", [
    (["/nonexistent/disk.img"], "no such file"),
    (["{file}", "--resume", "upl-0000000a"], "--resume needs --image"),
    (["{file}", "--name", "../../etc/passwd"], "name"),
    (["{file}", "--image", "img-0000000a;ls"], "not an eduCloud id"),
    (["{file}", "--owner-group", "no.such"], "no owner-group"),
])
def test_the_upload_command_explains_bad_input_without_a_traceback(cloud, image_file, arguments, message):
    OwnerGroup.objects.create(name="root", path="edu")
    with pytest.raises(CommandError, match=message):
        call_command("upload_image", *[a.replace("{file}", str(image_file)) for a in arguments])


def test_a_node_pulling_a_version_still_arriving_gets_what_has_arrived_straight_from_the_cc_disk(cloud, uploaded,
                                                                                                tmp_path,
                                                                                                monkeypatch):
    image, version = uploaded
    real_download = cluster_cache_module.download
    gate = threading.Event()

    def held_back_download(url, dest, *, progress, **kwargs):
        # Walrus's bytes arrive, but the last quarter only once the node has asked for the first part.
        def slowed(done, total):
            progress(done, total)
            if done >= 3 * total // 4 and not gate.is_set():
                gate.wait(30)

        return real_download(url, dest, progress=slowed, **kwargs)

    monkeypatch.setattr(cluster_cache_module, "download", held_back_download)
    monkeypatch.setattr(cluster_cache_module, "RELAY_MIN_BYTES", 1024 * 1024)
    url = f"{cloud.cc_url}/cc/api/1.0/images/{image.image_id}/versions/{version.number}/data"
    parts, sleeps = [], []
    original_get = requests.Session.get

    def recorded_get(self, url, **kwargs):
        response = original_get(self, url, **kwargs)
        if "/cc/api/" in url:  # the node's requests, not the cluster cache's own download from walrus
            parts.append((kwargs["headers"]["Range"], response.status_code, response.headers.get("Content-Range")))
            gate.set()
        return response

    monkeypatch.setattr(requests.Session, "get", recorded_get)
    monkeypatch.setattr("luhyaapi.transfer.time.sleep", sleeps.append)
    dest = tmp_path / "nc.img"
    assert download(url, dest, key=own_key(), expected_sha256=version.sha256) == version.sha256
    assert sha256_of(dest) == version.sha256
    # The first answer ended where walrus's bytes had got to; the node asked again at once for the rest.
    first_range, first_status, first_content_range = parts[0]
    assert (first_range, first_status) == ("bytes=0-", 206)
    first_end = int(first_content_range.split("-")[1].split("/")[0])
    assert 1024 * 1024 <= first_end + 1 < SIZE
    assert parts[1][0] == f"bytes={first_end + 1}-"
    assert parts[-1][2].endswith(f"-{SIZE - 1}/{SIZE}")
    assert sleeps == []
