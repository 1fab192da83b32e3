"""The CLC's image upload API against a real walrus (the live server): a repeated ``complete/`` records the version
once and answers as the first did, and walrus's refusals reach the client with their own status (507 disk full)."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import namedtuple

import pytest
import requests

from luhyadb.models import Image, ImageVersion, OwnerGroup, Server

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

API = "/clc/api/1.0"


@pytest.fixture
def walrus_online(live_server, cloud_at, tmp_path):
    """This host's walrus, serving from the live server with a scratch store."""
    cloud_at(live_server.url, data_dir=tmp_path / "host")
    return Server.objects.create(name="aio", role="walrus", ip="127.0.0.1", api_url=live_server.url, state="online")


@pytest.fixture
def image(api_client):
    OwnerGroup.objects.create(name="root", path="edu")
    response = api_client.post(f"{API}/images/", {"name": "Lab desktop", "os_type": "linux", "arch": 64,
                                                  "usage": "desktop", "owner_group": "edu"})
    assert response.status_code == 201, response.json()
    return response.json()["image_id"]


def upload(api_client, live_server, image_id: str, data: bytes) -> str:
    """Start an upload through the CLC and send its data to walrus with the pre-signed URL; returns its id."""
    response = api_client.post(f"{API}/images/{image_id}/uploads/",
                               {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    assert response.status_code == 201, response.json()
    started = response.json()
    put = requests.put(f"{live_server.url}{started['data_url']}&offset=0", data=data, timeout=30)
    assert put.json() == {"offset": len(data)}
    return started["upload_id"]


def complete(api_client, image_id: str, upload_id: str):
    return api_client.post(f"{API}/images/{image_id}/uploads/{upload_id}/complete/", None)


def test_a_repeated_complete_answers_as_the_first_and_records_the_version_once(
        api_client, live_server, walrus_online, image):
    upload_id = upload(api_client, live_server, image, os.urandom(4096))
    first = complete(api_client, image, upload_id)
    assert first.status_code == 201, first.json()
    repeats = [complete(api_client, image, upload_id) for _ in range(3)]
    assert [(repeat.status_code, repeat.json()) for repeat in repeats] == [(201, first.json())] * 3
    assert first.json()["version"] == "1.0.0"
    assert list(ImageVersion.objects.filter(image__image_id=image).values_list("number", "label")) == [(1, "1.0.0")]


def test_the_next_upload_after_repeated_completes_is_the_next_label(api_client, live_server, walrus_online, image):
    first = upload(api_client, live_server, image, os.urandom(4096))
    complete(api_client, image, first)
    complete(api_client, image, first)
    second = upload(api_client, live_server, image, os.urandom(2048))
    answer = complete(api_client, image, second).json()
    assert (answer["version"], answer["current_version"], answer["size_bytes"]) == ("1.0.1", 2, 2048)
    assert complete(api_client, image, first).json() == answer  # an old upload's repeat changes nothing
    assert list(ImageVersion.objects.filter(image__image_id=image).order_by("number").values_list(
        "number", "label")) == [(1, "1.0.0"), (2, "1.0.1")]


def test_a_store_without_room_for_the_image_is_a_507_naming_the_reason(
        api_client, live_server, walrus_online, image, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    response = api_client.post(f"{API}/images/{image}/uploads/", {"size": 5000})
    assert response.status_code == 507, response.json()
    assert response.json()["reason"] == "disk-full"
    assert "1000 bytes free" in response.json()["detail"]
    assert Image.objects.get(image_id=image).current_version == 0
