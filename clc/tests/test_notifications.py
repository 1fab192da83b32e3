"""Notifications for people (issue 17): the API list and mark-read under the owner-group rule (two schools: neither
sees the other's; a student only their own desktop's), the console's Notifications page, the unread count in its
bar, the instance page's "What happened", the admin page, and the instance's "restart when dead" switch."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from clc.services.notifications import notify
from clc.tests.classes import as_, school_records
from luhyadb.models import Instance, Notification, OwnerGroup

pytestmark = [pytest.mark.database, pytest.mark.django_db]

API = "/clc/api/1.0/notifications/"


@pytest.fixture
def school():
    """Two schools, a desktop of school 1's class c1 assigned to its student s01 and one of school 2, and a
    notification of each
    desktop, one of school 1's class c2 and one of the whole cloud."""
    records = school_records()
    desktops = {}
    for key, owner in (("s1", records["c1"]), ("s2", records["s2"])):
        desktops[key] = Instance.objects.create(
            instance_id=f"ins-0000{'a' if key == 's1' else 'b'}001", name=f"{key} desktop", kind="rvd",
            image=records["images"][f"edu.{key}"], vm_type=records["tiny"], owner_group=owner,
            assigned_to=records["students"][0] if key == "s1" else None)
    notes = {"s1": notify(title="s1 desktop stopped by alarm cpu-high", instance=desktops["s1"], alarm="cpu-high",
                          action="stop"),
             "s2": notify(title="s2 desktop rebooted", instance=desktops["s2"], alarm="mem", action="reboot"),
             "c2": notify(title="class c2 busy", owner_group="edu.s1.c2", alarm="class-cpu", action="notify"),
             "cloud": notify(title="disk of nc-1 full", alarm="disk-full", action="notify")}
    return records | {"desktops": desktops, "notes": notes}


def titles(answer) -> set[str]:
    assert answer.status_code == 200, answer.content
    return {row["title"] for row in answer.json()["results"]}


def test_each_school_sees_its_own_notifications_only_and_the_cloud_administrator_all(api_client, school):
    assert titles(as_(school["head1"]).get(API)) == {"s1 desktop stopped by alarm cpu-high", "class c2 busy"}
    assert titles(as_(school["head2"]).get(API)) == {"s2 desktop rebooted"}
    assert titles(as_(school["teacher1"]).get(API)) == {"s1 desktop stopped by alarm cpu-high", "class c2 busy"}
    assert titles(api_client.get(API)) == {row.title for row in school["notes"].values()}


def test_a_student_sees_only_the_notifications_of_their_own_desktop(school):
    assert titles(as_(school["students"][0]).get(API)) == {"s1 desktop stopped by alarm cpu-high"}
    assert titles(as_(school["students"][1]).get(API)) == set()


def test_the_list_is_unread_first_and_filters_by_unread_and_instance(api_client, school):
    Notification.objects.filter(pk=school["notes"]["cloud"].pk).update(read=True)
    rows = api_client.get(API).json()["results"]
    assert [row["read"] for row in rows] == [False, False, False, True]
    assert titles(api_client.get(API + "?unread=true")) == {"s1 desktop stopped by alarm cpu-high",
                                                            "s2 desktop rebooted", "class c2 busy"}
    assert titles(api_client.get(API + "?instance_id=ins-0000b001")) == {"s2 desktop rebooted"}
    assert api_client.get(API + "?limit=1").json()["count"] == 4


@pytest.mark.parametrize("query, field", [("unread=maybe", "unread"), ("instance_id=ins-zz", "instance_id"),
                                          ("limit=0", "limit"), ("offset=-1", "offset")])
def test_a_bad_query_is_a_400_naming_the_field(api_client, school, query, field):
    answer = api_client.get(f"{API}?{query}")
    assert answer.status_code == 400
    assert field in answer.json()


def test_marking_read_is_for_those_who_see_it_and_another_schools_is_a_404(school):
    mine, theirs = school["notes"]["s1"], school["notes"]["s2"]
    head1 = as_(school["head1"])
    answer = head1.post(f"{API}{mine.pk}/read/")
    assert answer.status_code == 200
    assert answer.json()["read"] is True
    assert Notification.objects.get(pk=mine.pk).read
    assert head1.post(f"{API}{theirs.pk}/read/").status_code == 404
    assert not Notification.objects.get(pk=theirs.pk).read
    assert head1.post(f"{API}999999/read/").status_code == 404


def test_nobody_logged_in_gets_a_401_and_a_login_without_account_a_403(client, school):
    assert client.get(API).status_code == 401
    client.force_login(get_user_model().objects.create_user("stranger"))
    assert client.get(API).status_code == 403
    assert client.post(f"{API}{school['notes']['s1'].pk}/read/").status_code == 403


def test_the_console_page_lists_the_notifications_and_marks_them_read(school):
    head1 = as_(school["head1"])
    page = head1.get("/clc/notifications/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "s1 desktop stopped by alarm cpu-high" in body and "class c2 busy" in body
    assert "s2 desktop rebooted" not in body
    assert 'id="unread-count" title="unread notifications">2<' in body
    mine = school["notes"]["s1"]
    assert head1.post(f"/clc/notifications/{mine.pk}/read/")["Location"] == "/clc/notifications/"
    assert Notification.objects.get(pk=mine.pk).read
    assert head1.post(f"/clc/notifications/{school['notes']['s2'].pk}/read/").status_code == 404
    head1.post("/clc/notifications/read/")
    assert not Notification.objects.filter(owner_group__startswith="edu.s1", read=False).exists()
    assert not Notification.objects.get(pk=school["notes"]["s2"].pk).read
    assert 'id="unread-count"' not in head1.get("/clc/notifications/").content.decode()


def test_the_instance_page_says_what_happened_to_it(school):
    desktop = school["desktops"]["s1"]
    notify(title="s1 desktop: the guest stopped or hung from inside", message="it was started again",
           instance=desktop, action="watchdog", level="error")
    body = as_(school["head1"]).get(f"/clc/instances/{desktop.instance_id}/").content.decode()
    happened = body[body.index("What happened"):]
    assert "s1 desktop: the guest stopped or hung from inside" in happened
    assert "s1 desktop stopped by alarm cpu-high" in happened
    assert "s2 desktop rebooted" not in body


def test_the_admin_lists_notifications(school):
    admin = get_user_model().objects.create_user("root-admin", is_staff=True, is_superuser=True)
    page = as_(admin).get("/admin/luhyadb/notification/")
    assert page.status_code == 200
    assert "disk of nc-1 full" in page.content.decode()


def test_restart_when_dead_is_set_at_definition_and_switched_at_any_time_by_api_and_form(api_client, school):
    desktop = school["desktops"]["s2"]
    answer = api_client.request("PATCH", f"/clc/api/1.0/instances/{desktop.instance_id}/",
                                {"restart_when_dead": True})
    assert answer.status_code == 200, answer.content
    assert answer.json()["restart_when_dead"] is True
    assert Instance.objects.get(pk=desktop.pk).restart_when_dead
    form = as_(school["head2"]).get(f"/clc/instances/{desktop.instance_id}/edit/").content.decode()
    assert 'name="restart_when_dead"' in form
    body = {"name": "s2 desktop", "kind": "rvd", "image": school["images"]["edu.s2"].image_id, "vm_type": "tiny",
            "owner_group": "edu.s2", "restart_when_dead": True}
    created = api_client.post("/clc/api/1.0/instances/", body)
    assert created.status_code == 201, created.content
    assert Instance.objects.get(instance_id=created.json()["instance_id"]).restart_when_dead


def test_a_group_renamed_away_leaves_its_notifications_to_the_cloud_administrators(api_client, school):
    OwnerGroup.objects.filter(path="edu.s1.c2").update(path="edu.s1.c3")
    assert "class c2 busy" not in titles(as_(school["head1"]).get(API))
    assert "class c2 busy" in titles(api_client.get(API))
