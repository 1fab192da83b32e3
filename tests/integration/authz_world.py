"""A world for the authorization tests: an owner-group tree with permissions, people of every role in it (a
school's super administrator and a reader who may not execute among them), and one or more records of every kind
owned across the tree, made in the database; plus what the tests ask of it (owners, who manages which host key,
which strings a person must never be shown)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import time, timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from clc.services.networks import save_network
from luhyadb.models import (
    Account,
    ClusterNetwork,
    DesktopPool,
    Host,
    HostCredential,
    Image,
    ImageApp,
    ImageVersion,
    Instance,
    JoinToken,
    Lesson,
    OwnerGroup,
    OwnerGroupPermission,
    Server,
    Snapshot,
    TaskTransaction,
    VMType,
    Volume,
)
from luhyadb.services.initial_data import seed_initial_data
from tests.authz_rule import ACTIONS, ROOT, Person, rule, type_rule, within

SECRET_NODE = ("nc-secret-node", "192.0.2.201")
SECRET_EIP = "203.0.113.77"
SUPERUSER = Person("root-admin", ROOT, "superadm", superuser=True)
NETWORK = {"cluster": "cluster1", "kind": "rvd", "mode": "private", "cc_eip": SECRET_EIP,
           "cc_internal_ip": "10.77.0.1", "cc_public_interface": "eth0", "cc_private_interface": "eth1",
           "lan_subnet": "10.77.0.0/24", "lan_gateway": "", "dhcp_start": "", "dhcp_end": "", "eip_start": "",
           "eip_end": "", "port_low": 6400, "port_high": 6499, "node_bridge": ""}


@dataclass(frozen=True)
class Spec:
    """What hypothesis drew: paths, each path's permissions, people, and where each record is."""

    paths: list[str]
    grants: dict[str, dict[str, set[str]]]
    people: list[Person]
    images: list[str]
    instances: list[tuple[str, int, str | None]]
    hosts: list[str | None]


@dataclass
class World:
    paths: list[str]
    people: list[Person]
    images: list[Image] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)
    tasks: list[TaskTransaction] = field(default_factory=list)
    builds: list[TaskTransaction] = field(default_factory=list)
    accounts: list[Account] = field(default_factory=list)
    groups: list[OwnerGroup] = field(default_factory=list)
    vmtypes: list[VMType] = field(default_factory=list)
    networks: list[ClusterNetwork] = field(default_factory=list)
    servers: list[Server] = field(default_factory=list)
    pools: list[DesktopPool] = field(default_factory=list)
    lessons: list[Lesson] = field(default_factory=list)
    volumes: list[Volume] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    _serial: itertools.count = field(default_factory=itertools.count)

    def serial(self) -> int:
        return next(self._serial)

    # Who owns what ---------------------------------------------------------------------------------------------

    def owner(self, record) -> tuple[str, str | None]:
        """The owner-group path of a record and, for an instance, the user name it is assigned to."""
        if isinstance(record, Instance):
            return record.owner_group.path, record.assigned_to.username if record.assigned_to_id else None
        if isinstance(record, TaskTransaction):
            instance = Instance.objects.filter(instance_id=record.instance_id).select_related("owner_group").first()
            if instance is not None:
                return instance.owner_group.path, None
            image = Image.objects.filter(image_id=record.src_image_id).select_related("owner_group").first()
            return (image.owner_group.path if image else ROOT), None
        if isinstance(record, OwnerGroup):
            return record.path, None
        if isinstance(record, Lesson):
            return record.pool.owner_group.path, None
        if isinstance(record, (VMType, ClusterNetwork, Server)):
            return ROOT, None
        group = record.owner_group
        return (group.path if group is not None else ROOT), None

    def build_image(self, task: TaskTransaction) -> Image:
        return Image.objects.select_related("owner_group").get(image_id=task.src_image_id)

    def person_of(self, account: Account) -> Person:
        return next(person for person in self.people if person.username == account.user.username)

    def credentials(self) -> list[HostCredential]:
        return list(HostCredential.objects.order_by("name"))

    def manages_key(self, person: Person, credential: HostCredential) -> bool:
        if credential.kind == "server":
            return rule(person, "create", "server", ROOT)
        host = Host.objects.select_related("owner_group").filter(mac=credential.mac).first()
        owner = host.owner_group.path if host is not None and host.owner_group_id else ROOT
        return rule(person, "create", "host", owner)

    def tokens(self) -> list[JoinToken]:
        return list(JoinToken.objects.select_related("owner_group").order_by("pk"))

    def sees_token(self, person: Person, token: JoinToken) -> bool:
        if type_rule(person, "create", "server"):
            return True
        return (type_rule(person, "create", "host") and token.kind == "pc" and token.owner_group_id is not None
                and within(person.path, token.owner_group.path))

    # What a person must never be shown ---------------------------------------------------------------------------

    def secrets(self, person: Person | None) -> set[str]:
        """Ids, names and addresses of records the person may do nothing with (and may not even know of)."""
        def untouchable(kind: str, owner: str, assignee: str | None = None) -> bool:
            return person is None or not any(rule(person, action, kind, owner, assignee) for action in ACTIONS)

        found = set()
        # What a record the person may see names is part of it: an instance's (and a pool's) image and assignee, a
        # task's images, instance (its id is the task id's last part) and who started it.
        named: set[str | None] = set()
        for task in TaskTransaction.objects.all():
            if not untouchable("task", self.owner(task)[0]):
                named.update((task.user, task.src_image_id, task.dst_image_id, task.instance_id))
        for instance in Instance.objects.select_related("owner_group", "assigned_to", "image"):
            owner, assignee = self.owner(instance)
            if untouchable("instance", owner, assignee):
                if instance.instance_id not in named:
                    found.add(instance.instance_id)
            else:
                named.update((assignee, instance.image.image_id))
        for pool in DesktopPool.objects.select_related("owner_group", "image"):
            if untouchable("pool", pool.owner_group.path):
                found.update((pool.pool_id, *pool.lessons.values_list("lesson_id", flat=True)))
            else:
                named.add(pool.image.image_id)  # as an instance names its image
        for volume in Volume.objects.select_related("owner_group"):
            if untouchable("volume", volume.owner_group.path):
                found.update((volume.volume_id, *volume.snapshots.values_list("snapshot_id", flat=True)))
        for image in Image.objects.select_related("owner_group"):
            if untouchable("image", image.owner_group.path) and image.image_id not in named:
                found.add(image.image_id)
        for account in Account.objects.select_related("user", "owner_group"):
            # The people of one's own branch may be named (a desktop is assigned to them); another branch's never.
            username = account.user.username
            if ((person is None or not within(person.path, account.owner_group.path))
                    and username not in named and (person is None or username != person.username)):
                found.add(username)
        if person is None or not type_rule(person, "read", "server"):
            found.update(SECRET_NODE)
        if person is None or not type_rule(person, "read", "network"):
            found.add(SECRET_EIP)
        paths = list(OwnerGroup.objects.values_list("path", flat=True))
        if person is not None:
            visible = [path for path in paths if within(person.path, path) or within(path, person.path)]
            found.update(path for path in paths if path not in visible and not any(path in seen for seen in visible))
        return found


def build_world(spec: Spec) -> World:
    """The world of ``spec`` in the database, with the fixed records every world has: the seeded VM types, a
    cluster network, a node controller, a pending key of a server and of a PC, and a join token."""
    seed_initial_data()
    groups = {}
    for path in spec.paths:
        groups[path] = OwnerGroup.objects.get_or_create(path=path, defaults={"name": f"group {path}"})[0]
        OwnerGroupPermission.objects.filter(owner_group=groups[path]).delete()
        for kind, actions in spec.grants[path].items():
            OwnerGroupPermission.objects.create(owner_group=groups[path], resource_type=kind,
                                                **{action: action in actions for action in ACTIONS})
    world = World(paths=spec.paths, people=[*spec.people, SUPERUSER])
    users = {}
    for person in spec.people:
        users[person.username] = get_user_model().objects.create_user(person.username)
        world.accounts.append(Account.objects.create(user=users[person.username], owner_group=groups[person.path],
                                                     role=person.role))
    get_user_model().objects.create_user(SUPERUSER.username, is_staff=True, is_superuser=True)
    vm_type = VMType.objects.get(name="tiny")
    world.vmtypes = [vm_type]
    for index, path in enumerate(spec.images):
        image = Image.objects.create(image_id=f"img-{index:08x}", name=f"image {index}", owner_group=groups[path],
                                     current_version=1)
        ImageVersion.objects.create(image=image, number=1, label="1.0.0", size_bytes=1024, sha256="a" * 64,
                                    format="qcow2")
        ImageApp.objects.create(image=image, name=f"app {index}", program="||notepad")  # a published app of each
        world.images.append(image)
    for index, (path, image, assignee) in enumerate(spec.instances):
        kind = "lvd" if index == len(spec.instances) - 1 and index else "rvd"
        world.instances.append(Instance.objects.create(
            instance_id=f"ins-{index:08x}", name=f"desktop {index}", kind=kind, image=world.images[image],
            vm_type=vm_type, owner_group=groups[path], assigned_to=users.get(assignee),
            mac=f"52:54:00:00:02:{index:02x}"))
    for instance in world.instances:
        world.tasks.append(TaskTransaction.objects.create(tid=instance.tid, src_image_id=instance.image.image_id,
                                                          dst_image_id=instance.image.image_id,
                                                          instance_id=instance.instance_id))
    for index, image in enumerate(world.images):
        # A pool of each image, in the image's group, with a lesson on Mondays.
        pool = DesktopPool.objects.create(pool_id=f"pol-{index:08x}", name=f"pool {index}", image=image,
                                          vm_type=vm_type, owner_group=image.owner_group, max_size=2)
        world.pools.append(pool)
        world.lessons.append(Lesson.objects.create(lesson_id=f"lsn-{index:08x}", name=f"lesson {index}", pool=pool,
                                                   weekdays=[0], starts=time(8), ends=time(9)))
        # A volume in each image's group (on an SC this world does not run), with a snapshot.
        volume = Volume.objects.create(volume_id=f"vol-{index:08x}", name=f"volume {index}",
                                       owner_group=image.owner_group, size_bytes=2**20, cluster="cluster1",
                                       sc="sc-absent", state="available")
        world.volumes.append(volume)
        world.snapshots.append(Snapshot.objects.create(snapshot_id=f"snp-{index:08x}", volume=volume,
                                                       owner_group=image.owner_group, size_bytes=2**20))
    from clc.services.builds import begin_build

    world.builds = [begin_build(world.images[0], vm_type)]
    for index, path in enumerate(spec.hosts):
        world.hosts.append(Host.objects.create(name=f"pc-{index}", mac=f"52:54:00:00:01:{index:02x}",
                                               ip=f"10.0.1.{index + 1}", cluster="cluster1",
                                               owner_group=groups.get(path)))
    world.groups = [groups[path] for path in spec.paths]
    world.networks = [save_network(NETWORK)]
    world.servers = [Server.objects.create(role="nc", name=SECRET_NODE[0], ip=SECRET_NODE[1], cluster="cluster1",
                                           state="online")]
    now = timezone.now()
    pc_mac = world.hosts[0].mac if world.hosts else "52:54:00:00:01:99"
    for name, kind, roles, mac in (("new-server", "server", "nc", ""), ("new-pc", "pc", "nc", pc_mac)):
        HostCredential.objects.create(name=name, kind=kind, roles=roles, cluster="cluster1", mac=mac,
                                      public_key="ed25519:" + "A" * 43 + "=", fingerprint="SHA256:x",
                                      requested_at=now)
    JoinToken.objects.create(digest="0" * 64, kind="pc", roles="nc", cluster="cluster1",
                             owner_group=groups[spec.paths[-1]], uses_left=1, expires=now + timedelta(hours=1))
    return world
