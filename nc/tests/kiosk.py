"""A school for the kiosk's tests: a classroom PC in an owner-group that may read and start instances, its local
desktops and others it must not see, and a fresh kiosk state per test."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from django.test import Client

from luhyadb.models import Host, Image, ImageVersion, Instance, OwnerGroup, OwnerGroupPermission, VMType
from luhyadb.services.initial_data import seed_initial_data
from nc.services import kiosk

PC_MAC = "52:54:00:3c:0f:7e"
PC_NAME = "pc-12"


@dataclass
class School:
    """The PC's owner-group, the PC, and the desktops by name."""

    group: OwnerGroup
    pc: Host
    desktops: dict[str, Instance]


def add_image(name: str, group: OwnerGroup, *, sha256: str, size: int, image_id: str = "") -> Image:
    """An image whose current version 1 has ``sha256`` and ``size`` (the file itself is wherever the test puts it)."""
    image = Image.objects.create(image_id=image_id or f"img-{hashlib.sha256(name.encode()).hexdigest()[:8]}",
                                 name=name, owner_group=group, current_version=1)
    ImageVersion.objects.create(image=image, number=1, label="1.0.0", size_bytes=size, sha256=sha256, format="raw")
    return image


def school_group() -> OwnerGroup:
    """The PC's owner-group ``edu.school`` (made on first use, so a test can add its images first)."""
    return OwnerGroup.objects.get_or_create(path="edu.school", defaults={"name": "school"})[0]


def make_school(image: Image | None = None, *, offline_enabled: bool = True, auto_sync: bool = True) -> School:
    """edu > edu.school (instances read + execute) with the PC, two local desktops of edu.school (``maths`` of
    ``image`` if given, an image of ``school_group()``), a remote desktop of edu.school and a local desktop of
    edu.other (also read + execute) the PC must not see. ``auto_sync`` off: the PC pulls only what is started."""
    seed_initial_data()
    school, other = school_group(), OwnerGroup.objects.create(name="other", path="edu.other")
    for group in (school, other):
        OwnerGroupPermission.objects.create(owner_group=group, resource_type="instance", read=True, execute=True)
    pc = Host.objects.create(name=PC_NAME, mac=PC_MAC, ip="127.0.0.1", cluster="cluster1", owner_group=school,
                             offline_enabled=offline_enabled, auto_sync=auto_sync)
    tiny = VMType.objects.get(name="tiny")
    image = image or add_image("Maths", school, sha256="11" * 32, size=1024)
    spare = add_image("Art", school, sha256="22" * 32, size=2048)
    elsewhere = add_image("Other", other, sha256="33" * 32, size=4096)
    desktops = {
        "maths": Instance.objects.create(instance_id="ins-0000a001", name="Maths lab", kind="lvd", image=image,
                                         vm_type=tiny, owner_group=school, services=[80], mac="52:54:00:00:a0:01"),
        "art": Instance.objects.create(instance_id="ins-0000a002", name="Art studio", kind="lvd", image=spare,
                                       vm_type=tiny, owner_group=school),
        "remote": Instance.objects.create(instance_id="ins-0000a003", name="Remote one", kind="rvd", image=spare,
                                          vm_type=tiny, owner_group=school),
        "other": Instance.objects.create(instance_id="ins-0000a004", name="Other school", kind="lvd",
                                         image=elsewhere, vm_type=tiny, owner_group=other),
    }
    return School(school, pc, desktops)


def put_in_node_cache(image: Image, data: bytes) -> Path:
    """Place ``data`` in this node's image cache as the image's version 1, verified, as a finished pull leaves it."""
    from nc.services.images import node_cache

    cache = node_cache()
    path = cache.path(image.image_id, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    cache.adopt(image.image_id, 1, hashlib.sha256(data).hexdigest())
    return path


def kiosk_client(**defaults) -> Client:
    """A browser at the PC: it opens the kiosk at ``http://127.0.0.1/`` (the test client's peer is 127.0.0.1)."""
    return Client(HTTP_HOST="127.0.0.1:8000", **defaults)


def reset_kiosk(monkeypatch) -> None:
    """No kiosk state left from another test: the CC not asked yet, no desktop being pulled, run or stopped."""
    monkeypatch.setattr(kiosk, "_link", kiosk._Link())
    monkeypatch.setattr(kiosk, "_activities", {})
