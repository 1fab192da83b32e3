"""Volumes made from an image version: downloaded from a live walrus (signed, its sha256 checked), converted to a
raw sparse file with qemu-img; a wrong checksum, an image larger than the volume and an image naming a backing file
leave the volume failed with the reason and no file; through the API the volume is made in the background (202)."""

from __future__ import annotations

import hashlib
import subprocess
import time

import pytest

from luhyaapi.signing import canonical_path, sign_headers
from luhyaapi.trust import own_key
from sc.constants import MiB
from sc.models import Volume
from sc.services.images import _inspect, create_volume_from_image
from sc.services.store import VolumeError, volume_path
from sc.tests.conftest import API

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("store")]

IMAGE = "img-0000000a"
WALRUS = "/walrus/api/1.0"


def qcow2_image(tmp_path, *commands: str, size: str = "8M", backing: str | None = None) -> bytes:
    path = tmp_path / "image.qcow2"
    argv = ["qemu-img", "create", "-f", "qcow2", "-q", str(path), size]
    if backing:
        argv[4:4] = ["-b", backing, "-F", "raw"]
    subprocess.run(argv, check=True, capture_output=True)
    for command in commands:
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, str(path)], check=True, capture_output=True)
    return path.read_bytes()


@pytest.fixture
def walrus(live_server, cloud_at, client, signed_client):
    """A live walrus on this test host (the SC downloads from it over HTTP); ``store(data)`` makes ``data`` the next
    version of IMAGE and returns its sha256."""
    cloud_at(live_server.url)

    def store(data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        started = signed_client.post(f"{WALRUS}/uploads/", {"image_id": IMAGE, "size": len(data), "sha256": sha256})
        upload_id = started.json()["upload_id"]
        route = f"{WALRUS}/uploads/{upload_id}/data"
        headers = sign_headers(own_key(), "PUT", "testserver", canonical_path(route, "offset=0"), None)
        meta = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
        assert client.generic("PUT", f"{route}?offset=0", data, content_type="application/octet-stream",
                              **meta).status_code == 200
        assert signed_client.post(f"{WALRUS}/uploads/{upload_id}/complete/", {}).status_code == 201
        return sha256

    return store


def test_a_volume_is_made_from_a_qcow2_image_version_as_a_raw_file_of_its_size(walrus, tmp_path):
    sha256 = walrus(qcow2_image(tmp_path, "write -P 0x61 1M 64k"))
    volume = create_volume_from_image(image_id=IMAGE, version=1, sha256=sha256, size=16 * MiB,
                                      volume_id="vol-0000000a", wait=True)
    assert (volume.state, volume.progress, volume.source, volume.source_id) == ("available", 100, "image",
                                                                                 f"{IMAGE}/1")
    path = volume_path("vol-0000000a")
    assert path.stat().st_size == 16 * MiB and path.stat().st_blocks * 512 < 2 * MiB
    with open(path, "rb") as file:
        file.seek(MiB)
        assert file.read(64 * 1024) == b"\x61" * 64 * 1024
        assert file.read(4096) == bytes(4096)


@pytest.mark.parametrize("case, says", [("wrong-sha256", "sha256"), ("too-small", "is more than the volume's")])
def test_an_image_that_cannot_be_made_into_the_volume_leaves_it_failed_with_the_reason_and_no_file(
        walrus, tmp_path, case, says):
    sha256 = walrus(qcow2_image(tmp_path, size="32M" if case == "too-small" else "8M"))
    volume = create_volume_from_image(image_id=IMAGE, version=1, size=16 * MiB, volume_id="vol-0000000a", wait=True,
                                      sha256="0" * 64 if case == "wrong-sha256" else sha256)
    assert volume.state == "failed" and says in volume.error, volume.error
    assert not volume_path("vol-0000000a").exists()


def test_an_image_naming_a_backing_file_is_refused_before_qemu_img_reads_it(tmp_path):
    # Walrus refuses such uploads already; the SC does not rely on it, since the backing file would be its own.
    (tmp_path / "secret.raw").write_bytes(b"not for guests" * 100)
    qcow2_image(tmp_path, backing=str(tmp_path / "secret.raw"))
    with pytest.raises(VolumeError, match="backing file"):
        _inspect(tmp_path / "image.qcow2")


@pytest.mark.parametrize("changes, field", [
    ({"image_id": "../img"}, "image_id"), ({"version": 0}, "version"), ({"version": True}, "version"),
    ({"sha256": "ABC"}, "sha256"), ({"size": None}, "size"), ({"size": 3}, "size"),
])
def test_bad_image_input_is_refused_naming_the_field_and_nothing_is_recorded(changes, field):
    arguments = {"image_id": IMAGE, "version": 1, "sha256": "a" * 64, "size": MiB} | changes
    with pytest.raises(VolumeError) as caught:
        create_volume_from_image(**arguments)
    assert (caught.value.status, caught.value.field) == (400, field)
    assert not Volume.objects.exists()


def test_the_api_makes_a_volume_from_an_image_in_the_background(walrus, tmp_path, signed_client):
    sha256 = walrus(qcow2_image(tmp_path, "write -P 0x62 0 4k"))
    response = signed_client.post(f"{API}/volumes/", {"volume_id": "vol-0000000b", "image_id": IMAGE, "version": 1,
                                                      "sha256": sha256, "size": 8 * MiB})
    assert response.status_code == 202 and response.json()["source"] == "image", response.json()
    deadline = time.monotonic() + 60
    while (state := signed_client.get(f"{API}/volumes/vol-0000000b/").json())["state"] == "creating":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert (state["state"], state["progress"], state["error"]) == ("available", 100, "")
    assert volume_path("vol-0000000b").read_bytes()[:4096] == b"\x62" * 4096
