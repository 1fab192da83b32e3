"""The owner-group rule (clc.services.authz), case by case: authority by dotted path, role caps, group permissions,
assigned desktops, cloud-wide and shared records, the kiosk's anonymous actor, and list filtering in the database."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from clc.services import authz
from luhyadb.models import (
    Account,
    ClusterNetwork,
    Host,
    Image,
    Instance,
    OwnerGroup,
    OwnerGroupPermission,
    Server,
    TaskTransaction,
    VMType,
)
from luhyadb.services.initial_data import seed_initial_data

pytestmark = [pytest.mark.database, pytest.mark.django_db]

FULL = dict.fromkeys(authz.ACTIONS, True)


def person(path="edu.school", role="poweradm", **grants) -> authz.Actor:
    return authz.Actor(user_id=7, username="someone", path=path, role=role,
                       grants={kind: frozenset(actions) for kind, actions in grants.items()})


@pytest.mark.parametrize("path, owner, reached", [
    ("a.b", "a.b", True), ("a.b", "a.b.c", True), ("a.b", "a.b.c.d.e.f", True),
    ("a.b", "a", False), ("a.b", "a.c", False), ("a.b", "a.bc", False), ("a.b.c", "a.b", False),
])
def test_an_account_reaches_its_own_path_and_everything_below_it_only(path, owner, reached):
    assert authz.within(path, owner) is reached
    actor = person(path, "poweradm", image=authz.ALL)
    assert authz.allows(actor, "read", "image", owner) is reached


def test_nobody_logged_in_may_do_anything():
    for action in authz.ACTIONS:
        assert not authz.allows(authz.NOBODY, action, "instance", "edu")


def test_the_role_caps_what_the_group_grants():
    grants = {kind: authz.ALL for kind in ("image", "instance", "host", "account")}
    user, poweruser, poweradm = (person(role=role, **grants) for role in ("user", "poweruser", "poweradm"))
    assert not authz.allows(user, "read", "image", "edu.school")
    assert authz.allows(poweruser, "write", "image", "edu.school")
    assert not authz.allows(poweruser, "create", "image", "edu.school")
    assert not authz.allows(poweruser, "delete", "instance", "edu.school")
    assert authz.allows(poweradm, "delete", "instance", "edu.school")
    assert authz.allows(poweradm, "execute", "host", "edu.school")
    assert not authz.allows(poweradm, "create", "account", "edu.school")


def test_the_group_must_grant_the_action_unless_the_role_is_super_administrator():
    poweradm = person(role="poweradm", instance={"read", "execute"})
    assert authz.allows(poweradm, "execute", "instance", "edu.school.c1")
    assert not authz.allows(poweradm, "delete", "instance", "edu.school.c1")
    assert not authz.allows(poweradm, "read", "image", "edu.school.c1")
    superadm = person(role="superadm")
    assert authz.allows(superadm, "delete", "account", "edu.school.c1")
    assert not authz.allows(superadm, "read", "account", "edu.other")


def test_a_user_reaches_only_the_desktops_assigned_to_them():
    student = person(role="user", instance={"read", "execute"})
    assert authz.allows(student, "execute", "instance", "edu.school", assignee_id=7)
    assert not authz.allows(student, "read", "instance", "edu.school", assignee_id=8)
    assert not authz.allows(student, "read", "instance", "edu.school", assignee_id=None)
    assert not authz.allows(student, "write", "instance", "edu.school", assignee_id=7)


def test_cloud_wide_records_need_the_root_path_and_vm_types_are_read_by_every_console_role():
    at_root, below = person("edu", "poweradm", server={"read"}, vmtype={"read"}), person(
        "edu.school", "poweradm", server={"read"}, vmtype={"read"})
    assert authz.allows(at_root, "read", "server", "edu")
    assert not authz.allows(below, "read", "server", "edu")
    assert authz.allows(below, "read", "vmtype", "edu")
    assert not authz.allows(person("edu.school", "superadm"), "write", "vmtype", "edu")
    assert authz.allows(person("edu", "superadm"), "write", "vmtype", "edu")


def test_an_unknown_action_is_a_programming_error():
    with pytest.raises(ValueError):
        authz.allows(person(), "launch", "instance", "edu")


@pytest.fixture
def cloud():
    """edu > edu.school > edu.school.c1, and edu.schoolx (a sibling whose name starts the same)."""
    seed_initial_data()
    groups = {path: OwnerGroup.objects.get_or_create(path=path, defaults={"name": path})[0]
              for path in ("edu", "edu.school", "edu.school.c1", "edu.schoolx")}
    for path in ("edu.school", "edu.school.c1", "edu.schoolx"):
        for kind in ("image", "instance", "host", "task"):
            OwnerGroupPermission.objects.create(owner_group=groups[path], resource_type=kind, **FULL)
    vm_type = VMType.objects.get(name="tiny")
    images = {path: Image.objects.create(image_id=f"img-{index:08x}", name=path, owner_group=group)
              for index, (path, group) in enumerate(groups.items())}
    instances = {path: Instance.objects.create(instance_id=f"ins-{index:08x}", name=path, kind="rvd",
                                               image=images[path], vm_type=vm_type, owner_group=group)
                 for index, (path, group) in enumerate(groups.items())}
    return groups, images, instances


def account(username, group, role) -> tuple:
    user = get_user_model().objects.create_user(username)
    Account.objects.create(user=user, owner_group=group, role=role)
    return user, authz.actor_for(user)


def test_an_actor_is_built_from_the_account_and_its_groups_permissions(cloud):
    groups, _, _ = cloud
    _, actor = account("teacher", groups["edu.school"], "poweradm")
    assert (actor.path, actor.role) == ("edu.school", "poweradm")
    assert actor.grants["instance"] == authz.ALL
    assert "server" not in actor.grants


def test_a_superuser_without_an_account_is_super_administrator_of_the_root_and_others_are_nobody(cloud):
    admin = get_user_model().objects.create_superuser("root-admin", password="x")
    assert (authz.actor_for(admin).path, authz.actor_for(admin).role) == ("edu", "superadm")
    plain = get_user_model().objects.create_user("no-account")
    assert not authz.actor_for(plain).is_person
    plain.is_active = False
    assert not authz.actor_for(plain).is_person


def test_lists_are_filtered_in_the_database_by_the_same_rule(cloud):
    groups, images, instances = cloud
    _, teacher = account("teacher", groups["edu.school"], "poweradm")
    names = set(authz.readable(teacher, Image.objects.all()).values_list("name", flat=True))
    assert names == {"edu.school", "edu.school.c1"}
    student_user, student = account("pupil", groups["edu.school"], "user")
    OwnerGroupPermission.objects.filter(owner_group=groups["edu.school"], resource_type="instance").update(
        write=False, create=False, delete=False)
    assert not authz.readable(student, Instance.objects.all()).exists()
    instances["edu.school.c1"].assigned_to = student_user
    instances["edu.school.c1"].save()
    assert list(authz.readable(student, Instance.objects.all())) == [instances["edu.school.c1"]]
    assert not authz.readable(student, Image.objects.all()).exists()


def test_every_row_a_list_shows_is_one_that_may_is_true_for_and_no_other(cloud):
    groups, _, _ = cloud
    for path, role in (("edu", "poweruser"), ("edu.school", "poweradm"), ("edu.school.c1", "superadm"),
                       ("edu.schoolx", "poweradm")):
        _, actor = account(f"a-{role}-{path.replace('.', '-')}", groups[path], role)
        for model in (Image, Instance, Host, Server, ClusterNetwork, VMType, TaskTransaction, OwnerGroup, Account):
            shown = set(authz.readable(actor, model.objects.all()))
            assert shown == {row for row in model.objects.all() if authz.may(actor, "read", row)}, (path, model)


def test_a_task_belongs_to_its_instances_owner_group_or_else_its_images(cloud):
    groups, images, instances = cloud
    _, teacher = account("teacher", groups["edu.school"], "poweradm")
    of_instance = TaskTransaction.objects.create(tid="t1", src_image_id=images["edu"].image_id,
                                                 dst_image_id=images["edu"].image_id,
                                                 instance_id=instances["edu.school.c1"].instance_id)
    orphan = TaskTransaction.objects.create(tid="t2", src_image_id=images["edu.school"].image_id,
                                            dst_image_id=images["edu.school"].image_id, instance_id="ins-gone0000")
    elsewhere = TaskTransaction.objects.create(tid="t3", src_image_id=images["edu.schoolx"].image_id,
                                               dst_image_id=images["edu.schoolx"].image_id, instance_id="ins-gone0001")
    assert authz.may(teacher, "read", of_instance) and authz.may(teacher, "read", orphan)
    assert not authz.may(teacher, "read", elsewhere)
    assert set(authz.readable(teacher, TaskTransaction.objects.all())) == {of_instance, orphan}


def test_a_kiosk_offers_the_local_desktops_its_pcs_group_may_read_and_start(cloud):
    groups, images, instances = cloud
    vm_type = VMType.objects.get(name="tiny")
    lvd = {path: Instance.objects.create(instance_id=f"ins-1{index:07x}", name=f"lvd {path}", kind="lvd",
                                         image=images[path], vm_type=vm_type, owner_group=groups[path])
           for index, path in enumerate(("edu", "edu.school", "edu.school.c1", "edu.schoolx"))}
    pc = Host.objects.create(name="pc-1", mac="52:54:00:00:00:01", ip="10.0.0.5", cluster="c1",
                             owner_group=groups["edu.school"])
    assert set(authz.kiosk_desktops(pc)) == {lvd["edu.school"], lvd["edu.school.c1"]}
    OwnerGroupPermission.objects.filter(owner_group=groups["edu.school"], resource_type="instance").update(
        execute=False)
    assert not authz.kiosk_desktops(pc).exists()
    pc.owner_group = None
    assert not authz.kiosk_desktops(pc).exists()


def test_someone_whose_account_cannot_reach_a_desktop_cannot_be_given_it(cloud):
    groups, _, _ = cloud
    user, _ = account("pupil", groups["edu.school.c1"], "user")
    assert authz.assignee_problem(user, "edu.school.c1") == ""
    assert authz.assignee_problem(user, "edu.school.c1.desk") == ""
    assert "could not reach" in authz.assignee_problem(user, "edu.school")
    stranger = get_user_model().objects.create_user("stranger")
    assert "no eduCloud account" in authz.assignee_problem(stranger, "edu")
