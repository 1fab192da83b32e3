"""People, owner-groups and a cloud for the class tests (pools, the class console): two schools sharing one cloud,
each with its classes, head, teacher and students, and a node with room for a class registered with this test
server's cluster controller."""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.test import Client

from cc.models import ClusterNode
from cc.services.instances import note_instance_status
from cc.services.scheduler import HOST_RESERVE_MB
from clc.services import authz
from clc.services.ownergroups import KINDS
from clc.services.status import StatusFolder
from luhyaapi.messages import InsStatus
from luhyadb.models import Account, Image, ImageVersion, Instance, OwnerGroup, OwnerGroupPermission, Server, VMType
from tests.keys import enrolled_key

CLASS = 30
TINY_MB = 256


def group(path: str, kind: str) -> OwnerGroup:
    """A new owner-group with the permissions of its kind (``ownergroups.KINDS``)."""
    made = OwnerGroup.objects.create(name=path, path=path)
    for resource_type, actions in KINDS[kind][1].items():
        OwnerGroupPermission.objects.create(owner_group=made, resource_type=resource_type,
                                            **{action: action in actions for action in authz.ACTIONS})
    return made


def person(username: str, owner: OwnerGroup, role: str = "user"):
    user = get_user_model().objects.create_user(username)
    Account.objects.create(user=user, owner_group=owner, role=role)
    return user


def as_(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def report(instance: Instance, state: str) -> None:
    """The node's report of the instance's current run, as it goes: noted by the CC, then folded by the CLC."""
    instance.refresh_from_db()
    relayed = note_instance_status(InsStatus(insid=instance.instance_id, node="nc-1", seq=instance.runs, state=state))
    StatusFolder(missed_heartbeats=3, db_touch_seconds=60).fold([relayed])


def school_records() -> dict:
    """School 1 (edu.s1) with classes c1 (``CLASS`` students) and c2, school 2 (edu.s2); each school with a head
    (super administrator) and a teacher (power user of the school); an image of each school and one of class c2;
    VM type tiny."""
    OwnerGroup.objects.create(name="root", path="edu")
    s1, s2 = group("edu.s1", "school"), group("edu.s2", "school")
    c1, c2 = group("edu.s1.c1", "class"), group("edu.s1.c2", "class")
    images = {}
    for owner in (s1, s2, c2):
        image = Image.objects.create(image_id=f"img-{len(images) + 1:08x}", name=f"{owner.path} desktop",
                                     owner_group=owner, current_version=1)
        ImageVersion.objects.create(image=image, number=1, label="1.0.0", size_bytes=1024, sha256="b" * 64,
                                    format="qcow2")
        images[owner.path] = image
    return {"s1": s1, "s2": s2, "c1": c1, "c2": c2, "images": images,
            "tiny": VMType.objects.create(name="tiny", cpus=1, memory_mb=TINY_MB, disk_gb=1),
            "head1": person("head1", s1, "superadm"), "head2": person("head2", s2, "superadm"),
            "teacher1": person("teacher1", s1, "poweruser"), "teacher2": person("teacher2", s2, "poweruser"),
            "students": [person(f"s{number:02d}", c1) for number in range(1, CLASS + 1)]}


def two_schools() -> dict:
    """``school_records`` with node nc-1 of cluster1, room for two classes, registered with the CC (this test
    server's: the ``controller`` fixture)."""
    Server.objects.create(name="nc-1", role="nc", ip="127.0.0.1", cluster="cluster1", state="online")
    enrolled_key("nc-1")
    ClusterNode.objects.create(name="nc-1", role="nc", ip="127.0.0.1", cpus=64,
                               memory_mb=HOST_RESERVE_MB + 2 * CLASS * TINY_MB, disk_mb=10**6, free_disk_mb=10**6,
                               last_seen=datetime.now(tz=UTC))
    return school_records()
