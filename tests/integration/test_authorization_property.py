"""Property test of authorization through the API: hypothesis builds owner-group trees (with sibling names that
share a prefix, like ``a`` and ``ab``), permissions per group and type, accounts of every role anywhere in the tree,
and images, instances (assigned or not), classroom PCs and tasks owned anywhere in it; then every account calls every
endpoint on every record (list, get, change, run/stop/wake, create, delete) and each answer must be exactly what the
rule in DESIGN.md section 7 says: refused (404 when the record may not even be read, 403 otherwise) when the rule
forbids, and never refused when it allows (a 403 also when the person may not do that to any record of
the type). The rule is restated here independently of clc.services.authz.

The counts of worlds, accounts and calls tried are written to tests/artifacts/authorization-property.json."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from luhyadb.models import Account, Host, Image, Instance, OwnerGroup, OwnerGroupPermission, TaskTransaction, VMType
from luhyadb.services.initial_data import seed_initial_data

ACTIONS = ("read", "write", "execute", "create", "delete")
TYPES = ("image", "instance", "host", "task")
ROLES = ("user", "poweruser", "poweradm", "superadm")
# What each role may ever do, by type (docs/authorization.md); the owner-group's permissions narrow it further.
CAPS = {
    "user": {"instance": {"read", "execute"}},
    "poweruser": {"image": {"read", "write", "execute"}, "instance": {"read", "write", "execute"}, "task": {"read"}},
    "poweradm": {"image": set(ACTIONS), "instance": set(ACTIONS), "host": set(ACTIONS), "task": {"read"}},
    "superadm": {kind: set(ACTIONS) for kind in TYPES},
}
REFUSED = {401, 403, 404}
STATS: Counter = Counter()
API = "/clc/api/1.0"


@dataclass(frozen=True)
class Person:
    username: str
    path: str
    role: str
    grants: dict


def type_rule(person: Person, action: str, kind: str) -> bool:
    """May the person do the action to some record of the type at all? (If not, every such call is a 403.)"""
    return action in CAPS[person.role].get(kind, set()) and (
        person.role == "superadm" or action in person.grants.get(kind, set()))


def rule(person: Person, action: str, kind: str, owner: str, assignee: str | None = None) -> bool:
    """DESIGN.md section 7, restated: role caps, authority by dotted path, group permission, assigned desktops."""
    if action not in CAPS[person.role].get(kind, set()):
        return False
    if not (owner == person.path or owner.startswith(person.path + ".")):
        return False
    if person.role != "superadm" and action not in person.grants.get(kind, set()):
        return False
    return not (person.role == "user" and kind == "instance" and assignee != person.username)


@st.composite
def worlds(draw):
    branches = draw(st.lists(st.lists(st.sampled_from(("a", "ab", "b")), min_size=1, max_size=3), min_size=1,
                             max_size=5))
    paths = {"edu"}
    for branch in branches:
        paths.update("edu." + ".".join(branch[:depth]) for depth in range(1, len(branch) + 1))
    paths = sorted(paths)
    grants = {path: {kind: set(draw(st.sets(st.sampled_from(ACTIONS)))) for kind in TYPES} for path in paths}
    people = [Person(f"p{index}", draw(st.sampled_from(paths)), draw(st.sampled_from(ROLES)), {})
              for index in range(draw(st.integers(2, 5)))]
    people = [Person(p.username, p.path, p.role, grants[p.path]) for p in people]
    images = draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3))
    instances = draw(st.lists(st.tuples(st.sampled_from(paths), st.integers(0, len(images) - 1),
                                        st.none() | st.sampled_from([p.username for p in people])),
                              min_size=1, max_size=4))
    hosts = draw(st.lists(st.none() | st.sampled_from(paths), max_size=2))
    return {"paths": paths, "grants": grants, "people": people, "images": images, "instances": instances,
            "hosts": hosts}


class AuthorizationPropertyTest(TestCase):
    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        artifacts = Path(__file__).resolve().parents[1] / "artifacts"
        if artifacts.is_dir():
            (artifacts / "authorization-property.json").write_text(json.dumps(dict(STATS), indent=2) + "\n")

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(worlds())
    def test_every_endpoint_answers_every_account_exactly_as_the_owner_group_rule_says(self, world):
        STATS["worlds"] += 1
        STATS["owner-groups"] += len(world["paths"])
        records = self.build(world)
        STATS["records"] += sum(len(rows) for rows in records.values())
        people = world["people"]
        STATS["accounts"] += len(people)
        for person in people:
            self.client.force_login(get_user_model().objects.get(username=person.username))
            self.check_lists(person, records)
            self.check_records(person, records)
            self.check_creates(person, world["paths"])
        self.check_deletes(people, records)

    # The world in the database -----------------------------------------------------------------------------

    def build(self, world) -> dict:
        seed_initial_data()
        groups = {}
        for path in world["paths"]:
            groups[path] = OwnerGroup.objects.get_or_create(path=path, defaults={"name": path})[0]
            OwnerGroupPermission.objects.filter(owner_group=groups[path]).delete()
            for kind, actions in world["grants"][path].items():
                OwnerGroupPermission.objects.create(owner_group=groups[path], resource_type=kind,
                                                    **{action: action in actions for action in ACTIONS})
        users = {}
        for person in world["people"]:
            users[person.username] = get_user_model().objects.create_user(person.username)
            Account.objects.create(user=users[person.username], owner_group=groups[person.path], role=person.role)
        vm_type = VMType.objects.get(name="tiny")
        images = [Image.objects.create(image_id=f"img-{index:08x}", name=f"image {index}", owner_group=groups[path])
                  for index, path in enumerate(world["images"])]
        instances = []
        for index, (path, image, assignee) in enumerate(world["instances"]):
            instances.append(Instance.objects.create(
                instance_id=f"ins-{index:08x}", name=f"desktop {index}", kind="rvd", image=images[image],
                vm_type=vm_type, owner_group=groups[path], assigned_to=users.get(assignee)))
        hosts = [Host.objects.create(name=f"pc-{index}", mac=f"52:54:00:00:01:{index:02x}", ip=f"10.0.1.{index + 1}",
                                     cluster="cluster1", owner_group=groups.get(path))
                 for index, path in enumerate(world["hosts"])]
        tasks = [TaskTransaction.objects.create(tid=instance.tid, src_image_id=instance.image.image_id,
                                                dst_image_id=instance.image.image_id,
                                                instance_id=instance.instance_id) for instance in instances]
        return {"image": images, "instance": instances, "host": hosts, "task": tasks}

    @staticmethod
    def owner(record) -> tuple[str, str | None]:
        if isinstance(record, TaskTransaction):
            return Instance.objects.get(instance_id=record.instance_id).owner_group.path, None
        if isinstance(record, Instance):
            return record.owner_group.path, record.assigned_to.username if record.assigned_to else None
        return (record.owner_group.path if record.owner_group else "edu"), None

    # The calls ----------------------------------------------------------------------------------------------

    def call(self, method: str, path: str, body: dict | None = None):
        STATS["calls"] += 1
        if method == "GET":
            return self.client.get(path)
        return self.client.generic(method, path, json.dumps(body or {}), content_type="application/json")

    def expect(self, person: Person, response, kind: str, action: str, record) -> None:
        owner, assignee = self.owner(record)
        allowed = rule(person, action, kind, owner, assignee)
        readable = rule(person, "read", kind, owner, assignee)
        context = (person, kind, action, owner, assignee, response.status_code, response.content[:200])
        if allowed:
            STATS["allowed"] += 1
            assert response.status_code not in REFUSED, context
        else:
            STATS["refused"] += 1
            assert response.status_code == (403 if readable or not type_rule(person, action, kind) else 404), context

    def check_lists(self, person: Person, records: dict) -> None:
        for kind, route, key in (("image", "images", "image_id"), ("instance", "instances", "instance_id"),
                                 ("host", "hosts", "mac")):
            response = self.call("GET", f"{API}/{route}/?limit=500")
            if not type_rule(person, "read", kind):
                STATS["refused"] += 1
                assert response.status_code == 403, (person, kind, response.status_code)
                continue
            shown = {row[key] for row in response.json()["results"]}
            expected = {getattr(record, key) for record in records[kind]
                        if rule(person, "read", kind, *self.owner(record))}
            STATS["list rows checked"] += len(records[kind])
            assert shown == expected, (person, kind, shown, expected)

    def check_records(self, person: Person, records: dict) -> None:
        for image in records["image"]:
            url = f"{API}/images/{image.image_id}/"
            self.expect(person, self.call("GET", url), "image", "read", image)
            self.expect(person, self.call("PATCH", url, {"description": "checked"}), "image", "write", image)
        for instance in records["instance"]:
            url = f"{API}/instances/{instance.instance_id}/"
            self.expect(person, self.call("GET", url), "instance", "read", instance)
            self.expect(person, self.call("PATCH", url, {"name": instance.name}), "instance", "write", instance)
            self.expect(person, self.call("POST", url + "stop/"), "instance", "execute", instance)
            self.expect(person, self.call("POST", url + "run/"), "instance", "execute", instance)
        for host in records["host"]:
            url = f"{API}/hosts/{host.mac}/"
            self.expect(person, self.call("GET", url), "host", "read", host)
            self.expect(person, self.call("PATCH", url, {"location": "Room 2"}), "host", "write", host)
            self.expect(person, self.call("POST", url + "wake/"), "host", "execute", host)
        for task in records["task"]:
            self.expect(person, self.call("GET", f"{API}/tasks/{task.tid}/"), "task", "read", task)

    def check_creates(self, person: Person, paths: list[str]) -> None:
        for path in paths:
            response = self.call("POST", f"{API}/images/", {"name": "made here", "owner_group": path})
            if rule(person, "create", "image", path):
                STATS["allowed"] += 1
                assert response.status_code == 201, (person, path, response.content[:200])
                Image.objects.filter(image_id=response.json()["image_id"]).delete()
            else:
                STATS["refused"] += 1
                assert response.status_code == 403, (person, path, response.status_code)
                assert not Image.objects.filter(name="made here").exists()

    def check_deletes(self, people: list[Person], records: dict) -> None:
        """Every person tries to delete every record; a refused delete leaves it, an allowed one removes it (or is
        refused by the record's state, never by authorization)."""
        for kind, route, key in (("instance", "instances", "instance_id"), ("host", "hosts", "mac"),
                                 ("image", "images", "image_id")):
            for record in records[kind]:
                for person in people:
                    model = type(record)
                    if not model.objects.filter(pk=record.pk).exists():
                        break
                    self.client.force_login(get_user_model().objects.get(username=person.username))
                    record = model.objects.get(pk=record.pk)
                    response = self.call("DELETE", f"{API}/{route}/{getattr(record, key)}/")
                    self.expect(person, response, kind, "delete", record)
                    if not rule(person, "delete", kind, *self.owner(record)):
                        assert model.objects.filter(pk=record.pk).exists()
