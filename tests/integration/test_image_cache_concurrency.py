"""A class launching one image at once on one node, through the real chain (walrus -> CC cluster cache -> NC cache,
signed HTTP on a live server) and real ``qemu-img`` clones: one download per image version, every launch gets the
verified file, and eviction never takes an image a clone is reading."""

from __future__ import annotations

import gc
import os
import threading
from dataclasses import replace

import pytest
from django.conf import settings
from django.db import connection

import cc.services.image_cache as cluster_cache_module
import nc.services.images as node_images
from clc.services.images import create_image, finish_upload, start_upload
from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.imagecache import CacheFull, sha256_of
from luhyaapi.messages import Command, ImageRef
from luhyaapi.transfer import upload_file
from luhyaapi.trust import own_key
from luhyaapi.vmspec import ConsoleSpec, RuntimeOptions
from luhyadb.models import OwnerGroup, Server
from nc.drivers.qemu_img import image_info
from nc.models import NodeInstance
from nc.services import instances
from nc.services.images import fetch_image, held_image, node_cache

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

SIZE = 6 * 1024 * 1024 + 77
LAUNCHES = 8


@pytest.fixture(autouse=True)
def no_lingering_connections():
    """Connections of the live server's threads are collected while it still runs (as in test_image_chain)."""
    yield
    gc.collect()


@pytest.fixture
def cloud(live_server, cloud_at, tmp_path, monkeypatch):
    """One host running every role (the live server) with walrus and the CC registered, fresh caches."""
    config = cloud_at(live_server.url, data_dir=tmp_path / "host", name="aio")
    monkeypatch.setattr(cluster_cache_module, "_caches", {})
    for role in ("walrus", "cc"):
        Server.objects.create(name="aio", role=role, ip="127.0.0.1", cluster=config.cluster, api_url=live_server.url,
                              state="online")
    Server.objects.create(name="aio", role="nc", ip="127.0.0.1", cluster=config.cluster, state="online")
    from cc.models import ClusterNode

    ClusterNode.objects.create(name="aio", role="nc", ip="127.0.0.1")
    return config


@pytest.fixture
def node_downloads(monkeypatch) -> list[str]:
    """Every download this node starts from its CC (the real download runs; each call is recorded)."""
    calls: list[str] = []
    real_download = node_images.download

    def counted(url, dest, **kwargs):
        calls.append(url)
        return real_download(url, dest, **kwargs)

    monkeypatch.setattr(node_images, "download", counted)
    return calls


def upload(cloud, tmp_path, name: str, size: int = SIZE) -> ImageRef:
    """A new image in walrus holding ``size`` random bytes (a raw disk), as the node is told of it."""
    path = tmp_path / f"{name}.raw"
    path.write_bytes(os.urandom(size))
    group, _ = OwnerGroup.objects.get_or_create(name="root", path="edu")
    image = create_image(name=name, owner_group=group)
    started = start_upload(image, size)
    upload_file(cloud.walrus_url, own_key(), path, image.image_id, upload_id=started["upload_id"])
    version = finish_upload(image, started["upload_id"])
    return ImageRef(image_id=image.image_id, version=version.number, sha256=version.sha256, size=version.size_bytes)


def at_once(count: int, work) -> list:
    """``work(n)`` in ``count`` threads released together; each one's result, or the exception it raised."""
    start = threading.Barrier(count)
    results: list = [None] * count

    def run(n: int) -> None:
        start.wait()
        try:
            results[n] = work(n)
        except Exception as exc:  # noqa: BLE001 - the test asserts on what each launch got
            results[n] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    return results


class Reports:
    """The node's reports of each launch, as its CC would receive them."""

    def __init__(self) -> None:
        self.messages: list = []

    def publish(self, message) -> None:
        self.messages.append(message)

    def report_now(self, last_command: str = "") -> None:
        pass

    def failures(self) -> list[str]:
        return [message.errormsg for message in self.messages if getattr(message, "errormsg", "")]


def prepare_command(n: int, image: ImageRef) -> Command:
    """``instance/run`` of the n-th desktop of the class, stopping after its clone (no VM is started)."""
    options = RuntimeOptions(console=ConsoleSpec(port=16000 + n))
    return Command(op="instance/run", tid=f"tsk-0000d{n:03x}:img:ins", seq=1,
                   paras={"insid": f"ins-0000d{n:03x}", "image": image.model_dump(mode="json"),
                          "options": options.model_dump(mode="json"), "boot": False})


def test_a_class_launching_one_image_on_a_cold_node_downloads_it_once_and_every_launch_gets_it(
        cloud, tmp_path, node_downloads):
    image = upload(cloud, tmp_path, "Lab desktop")
    got = at_once(LAUNCHES, lambda n: fetch_image(image.image_id, image.version, image.sha256, image.size))
    problems = [result for result in got if isinstance(result, Exception)]
    assert problems == []
    assert {sha256_of(cached.path) for cached in got} == {image.sha256}
    assert len(node_downloads) == 1


def test_a_class_cloning_one_cached_image_at_once_gets_every_clone(cloud, tmp_path, node_downloads):
    image = upload(cloud, tmp_path, "Lab desktop")
    cached = fetch_image(image.image_id, image.version, image.sha256, image.size)
    driver = instances.node_driver()

    def launch(n: int) -> str:
        # What a launch does with the image (``_prepare_disk``): hold it, make the instance's clone of it.
        with held_image(image.image_id, image.version, image.sha256, image.size) as held:
            clone = tmp_path / "disks" / f"{n}.qcow2"
            driver.clone_disk(held.path, clone)
        return image_info(clone)["backing-filename"]

    assert at_once(LAUNCHES, launch) == [str(cached.path)] * LAUNCHES
    assert sha256_of(cached.path) == image.sha256
    assert len(node_downloads) == 1


def concurrent_writers_or_skip() -> None:
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip("each launch writes its instance record from its own thread, and the test suite's in-memory "
                    "SQLite locks whole tables and fails at once instead of waiting; the MariaDB run proves this "
                    "(a node's file database takes writers one at a time)")


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_a_class_launching_one_image_at_once_prepares_every_desktop_from_one_download(cloud, tmp_path, node_downloads,
                                                                                     warm):
    concurrent_writers_or_skip()
    image = upload(cloud, tmp_path, "Lab desktop")
    if warm:
        fetch_image(image.image_id, image.version, image.sha256, image.size)
    reports = Reports()
    assert at_once(LAUNCHES, lambda n: instances.run_instance(prepare_command(n, image), reports)) == [None] * LAUNCHES
    assert reports.failures() == []
    records = NodeInstance.objects.filter(instance_id__startswith="ins-0000d")
    assert sorted(record.state for record in records) == ["stopped"] * LAUNCHES
    cached = node_cache().path(image.image_id, image.version)
    for record in records:
        assert record.image_path == str(cached)
        assert image_info(record.disk_path)["backing-filename"] == str(cached)
    assert sha256_of(cached) == image.sha256
    assert len(node_downloads) == 1


def test_eviction_skips_an_image_while_a_launch_clones_it(cloud, tmp_path, monkeypatch):
    cloned = upload(cloud, tmp_path, "Cloned desktop")
    other = upload(cloud, tmp_path, "Other desktop")
    # Room for one of the two images only: the other's pull has to evict the first to fit.
    settings.EDUCLOUD = replace(settings.EDUCLOUD, image_cache_bytes=SIZE + SIZE // 2)
    cached = fetch_image(cloned.image_id, cloned.version, cloned.sha256, cloned.size)
    driver = instances.node_driver()
    real_clone = driver.clone_disk
    cloning, may_finish = threading.Event(), threading.Event()

    def clone_when_told(base, dest):
        cloning.set()
        assert may_finish.wait(60)
        real_clone(base, dest)

    monkeypatch.setattr(driver, "clone_disk", clone_when_told)
    reports = Reports()
    launch = threading.Thread(target=lambda: (instances.run_instance(prepare_command(1, cloned), reports),
                                              connection.close()))
    launch.start()
    try:
        assert cloning.wait(60)
        with pytest.raises(CacheFull):
            fetch_image(other.image_id, other.version, other.sha256, other.size)
        assert sha256_of(cached.path) == cloned.sha256
    finally:
        may_finish.set()
        launch.join(60)
    assert reports.failures() == []
    record = NodeInstance.objects.get(instance_id="ins-0000d001")
    assert (record.state, record.image_path) == ("stopped", str(cached.path))
    # Once no instance is a clone of it, the image may go to make room.
    record.delete()
    fetch_image(other.image_id, other.version, other.sha256, other.size)
    assert not cached.path.exists()
    assert node_cache().lookup(other.image_id, other.version, other.sha256) is not None


def test_caches_too_small_for_an_image_refuse_it_before_evicting_the_images_they_hold(cloud, tmp_path):
    kept = upload(cloud, tmp_path, "Kept desktop")
    huge = upload(cloud, tmp_path, "Huge desktop", size=2 * SIZE)
    settings.EDUCLOUD = replace(settings.EDUCLOUD, image_cache_bytes=SIZE + SIZE // 2)
    on_node = fetch_image(kept.image_id, kept.version, kept.sha256, kept.size)
    on_cluster = cluster_cache_module.cluster_cache().files.path(kept.image_id, kept.version)
    assert on_cluster.exists()

    with pytest.raises(CacheFull) as refused_by_node:
        fetch_image(huge.image_id, huge.version, huge.sha256, huge.size)
    with pytest.raises(RemoteError) as refused_by_cluster:
        RoleClient(cloud.cc_url, own_key()).get(f"/cc/api/1.0/images/{huge.image_id}/versions/{huge.version}/data")
    assert on_node.path.exists() and sha256_of(on_node.path) == kept.sha256
    assert on_cluster.exists() and sha256_of(on_cluster) == kept.sha256
    assert "larger than the whole image cache" in str(refused_by_node.value)
    assert refused_by_cluster.value.status == 507
    assert "larger than the whole image cache" in refused_by_cluster.value.detail
