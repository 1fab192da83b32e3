"""The admin console's instance pages: list, define, detail with live parts, run/stop/delete and edit, with clear
messages for every refusal and no tracebacks."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model

from cc.models import ClusterNode
from clc.services.status import StatusFolder
from luhyaapi.messages import InsStatus
from luhyadb.models import (
    Account,
    Image,
    ImageVersion,
    Instance,
    OwnerGroup,
    OwnerGroupPermission,
    Server,
    TaskTransaction,
    VMType,
)
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db]

FORM = {"name": "Maths desktop", "kind": "rvd", "vm_type": "", "owner_group": "", "image": "", "services": "22, 80",
        "pinned_node": ""}


@pytest.fixture
def staff_client(client):
    # No password: hashing one costs more than the rest of a test, and force_login needs none.
    client.force_login(get_user_model().objects.create_user("boss", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def records():
    """An image with a file, one without, two VM types, an owner-group and a node controller."""
    group = OwnerGroup.objects.create(name="root", path="edu")
    image = Image.objects.create(image_id="img-0000abcd", name="Ubuntu desk", owner_group=group, current_version=1)
    ImageVersion.objects.create(image=image, number=1, label="1.0.0", size_bytes=1024, sha256="b" * 64,
                                format="qcow2")
    empty = Image.objects.create(image_id="img-0000eeee", name="Empty image", owner_group=group)
    tiny = VMType.objects.create(name="tiny", cpus=1, memory_mb=256, disk_gb=1)
    huge = VMType.objects.create(name="huge", cpus=1, memory_mb=65536, disk_gb=1)
    Server.objects.create(name="nc-1", role="nc", ip="10.0.0.5", cluster="c1", state="online")
    return {"group": group, "image": image, "empty": empty, "tiny": tiny, "huge": huge}


def make(records, number=1, **changes) -> Instance:
    values = {"instance_id": f"ins-{number:08x}", "name": f"Desktop {number}", "kind": "rvd",
              "image": records["image"], "vm_type": records["tiny"], "owner_group": records["group"],
              "mac": "52:54:00:00:00:01"} | changes
    return Instance.objects.create(**values)


def form_data(records, **changes) -> dict:
    return FORM | {"vm_type": records["tiny"].pk, "owner_group": records["group"].pk,
                   "image": records["image"].pk} | changes


def rows(page: str) -> list[str]:
    return re.findall(r'<td><a href="/clc/instances/(ins-[0-9a-f]{8})/">', page)


def enabled_actions(page: str) -> set[str]:
    found = re.findall(r'data-action="(\w+)"( disabled| aria-disabled="true")?>', page)
    assert {action for action, _ in found} == {"run", "stop", "edit", "delete"}
    return {action for action, off in found if not off}


# The list


def test_the_list_shows_each_instance_with_its_state_and_the_console_of_running_ones(staff_client, records):
    make(records, 1, name="Web server", kind="vs", state="running", node="nc-1", guest_ip="10.0.2.15",
         console_url="vnc://10.0.0.5:5901",
         access={"console": "vnc://10.0.0.5:5901", "http": "http://10.0.0.5:20080/", "tcp/22": "10.0.0.5:20022"})
    make(records, 2, name="Old desktop", state="stopped", console_url="vnc://10.0.0.5:5902")
    page = staff_client.get("/clc/instances/").content.decode()
    for text in ("Web server", "ins-00000001", "Virtual server", "Ubuntu desk", "tiny", 'class="state running"',
                 'href="vnc://10.0.0.5:5901"', 'href="http://10.0.0.5:20080/"', "10.0.2.15", "nc-1",
                 'class="state stopped"', 'href="/clc/instances/new/"'):
        assert text in page
    assert "vnc://10.0.0.5:5902" not in page  # a stopped instance's old console port is not offered


def test_a_script_url_reported_by_a_node_never_becomes_a_link(staff_client, records):
    make(records, 1, state="running", console_url="javascript:alert(1)", access={"http": "javascript:alert(2)"})
    page = staff_client.get("/clc/instances/").content.decode() + staff_client.get(
        "/clc/instances/ins-00000001/").content.decode()
    assert 'href="javascript:' not in page


@pytest.mark.parametrize("query", ["maths", "ins-000000aa", "NC-7"])
def test_search_finds_instances_by_name_id_or_node(staff_client, records, query):
    make(records, 0xAA, name="Maths desktop", node="nc-7")
    make(records, 0xBB, name="Art desktop", node="nc-8")
    page = staff_client.get("/clc/instances/", {"q": query}).content.decode()
    assert rows(page) == ["ins-000000aa"]


def test_kind_and_state_filters_narrow_the_list(staff_client, records):
    make(records, 1, kind="vs", state="running")
    make(records, 2, kind="vs", state="stopped")
    make(records, 3, kind="lvd", state="running")
    assert rows(staff_client.get("/clc/instances/", {"kind": "vs"}).content.decode()) == [
        "ins-00000001", "ins-00000002"]
    assert rows(staff_client.get("/clc/instances/", {"kind": "vs", "state": "running"}).content.decode()) == [
        "ins-00000001"]
    page = staff_client.get("/clc/instances/", {"state": "failed"}).content.decode()
    assert rows(page) == [] and "No instance matches." in page


def test_an_unknown_filter_value_is_ignored_not_an_error(staff_client, records):
    make(records, 1)
    response = staff_client.get("/clc/instances/", {"state": "'; drop table", "kind": "vm"})
    assert response.status_code == 200
    assert rows(response.content.decode()) == ["ins-00000001"]


def test_the_list_shows_25_a_page_and_keeps_the_filters_across_pages(staff_client, records):
    for number in range(1, 31):
        make(records, number, name=f"Desktop {number:02d}", kind="vs")
    make(records, 99, name="Other", kind="lvd")
    first = staff_client.get("/clc/instances/", {"kind": "vs"}).content.decode()
    assert len(rows(first)) == 25
    assert "Page 1 of 2" in first
    assert "?kind=vs&amp;page=2" in first
    second = staff_client.get("/clc/instances/", {"kind": "vs", "page": 2}).content.decode()
    assert len(rows(second)) == 5
    assert "ins-00000063" not in second


# Defining


def test_the_form_offers_only_images_with_a_file_and_the_node_controllers(staff_client, records):
    page = staff_client.get("/clc/instances/new/").content.decode()
    assert "Ubuntu desk" in page
    assert "Empty image" not in page
    assert '<option value="nc-1">nc-1 (cluster c1, online)</option>' in page


def test_the_form_offers_a_school_administrator_their_schools_people_and_no_node(client, records):
    school = OwnerGroup.objects.create(name="school", path="edu.s1")
    other = OwnerGroup.objects.create(name="other school", path="edu.s2")
    OwnerGroupPermission.objects.create(owner_group=school, resource_type="instance", read=True, create=True)
    for username, group in (("head", school), ("pupil-1", school), ("pupil-2", other)):
        Account.objects.create(user=get_user_model().objects.create_user(username), owner_group=group,
                               role="poweradm" if username == "head" else "user")
    client.force_login(get_user_model().objects.get(username="head"))
    page = client.get("/clc/instances/new/").content.decode()
    assert ">pupil-1<" in page
    assert "pupil-2" not in page and "nc-1" not in page


@pytest.mark.parametrize("field, value, message", [
    ("name", "x; rm -rf /", "may not contain"),
    ("name", "../../etc", "may not contain"),
    ("name", "   ", "This field is required."),
    ("services", "0", "is not a TCP port"),
    ("services", "70000", "is not a TCP port"),
    ("services", "80; id", "is not a TCP port"),
    ("services", "9" * 5000, "is not a TCP port"),
    ("services", "80, 443, 80", "a port is listed twice"),
    ("services", "1, 2, 3, 4, 5, 6, 7, 8, 9", "at most 8 ports"),
    ("kind", "vm", "Select a valid choice"),
    ("pinned_node", "NC_1;reboot", "Select a valid choice"),
])
def test_the_create_form_refuses_bad_values_with_the_fields_message(staff_client, records, field, value, message):
    response = staff_client.post("/clc/instances/new/", form_data(records, **{field: value}))
    assert response.status_code == 200
    assert any(message in error for error in response.context["form"].errors[field])
    assert not Instance.objects.exists()


def test_a_data_disk_needs_a_remote_desktop_assigned_to_someone_and_is_kept_with_it(staff_client, records):
    refused = staff_client.post("/clc/instances/new/", form_data(records, data_disk_mb="512"))
    assert "assigned to someone" in str(refused.context["form"].errors["data_disk_mb"])
    for value, message in (("-1", "greater than or equal to 0"), ("9" * 12, "less than or equal to")):
        refused = staff_client.post("/clc/instances/new/", form_data(records, data_disk_mb=value))
        assert message in str(refused.context["form"].errors["data_disk_mb"]), value
    assert not Instance.objects.exists()
    pupil = get_user_model().objects.create_user("pupil-d", password="pw-pupil-123")
    Account.objects.create(user=pupil, owner_group=records["group"])
    response = staff_client.post("/clc/instances/new/", form_data(records, data_disk_mb="512", assigned_to=pupil.pk))
    assert response.status_code == 302, response.context and response.context["form"].errors
    assert (Instance.objects.get().data_disk_mb, Instance.objects.get().assigned_to) == (512, pupil)


def test_an_image_without_a_file_cannot_be_chosen(staff_client, records):
    response = staff_client.post("/clc/instances/new/", form_data(records, image=records["empty"].pk))
    assert response.status_code == 200
    assert "Select a valid choice" in str(response.context["form"].errors["image"])
    assert not Instance.objects.exists()


def test_a_valid_form_defines_the_instance_and_opens_its_page(staff_client, records):
    response = staff_client.post("/clc/instances/new/", form_data(records, pinned_node="nc-1", persistent="on"))
    instance = Instance.objects.get()
    assert (response.status_code, response["Location"]) == (302, f"/clc/instances/{instance.instance_id}/")
    assert (instance.name, instance.kind, instance.state, instance.services, instance.pinned_node,
            instance.persistent) == ("Maths desktop", "rvd", "defined", [22, 80], "nc-1", True)
    assert instance.mac.startswith("52:54:00:")
    page = staff_client.get(response["Location"]).content.decode()
    assert "Instance Maths desktop" in page and "defined: press Run to start it." in page


# The detail page


def test_the_detail_page_shows_a_running_instances_console_and_how_to_reach_it(staff_client, records):
    make(records, 1, state="running", node="nc-1", cluster="c1", guest_ip="10.0.2.15", runs=1,
         console_url="vnc://10.0.0.5:5901", message="placed on nc-1 in cluster c1",
         access={"console": "vnc://10.0.0.5:5901", "http": "http://10.0.0.5:20080/", "tcp/22": "10.0.0.5:20022"})
    page = staff_client.get("/clc/instances/ins-00000001/").content.decode()
    for text in ('<a class="console" href="vnc://10.0.0.5:5901">vnc://10.0.0.5:5901</a>', "open with a VNC client",
                 'href="http://10.0.0.5:20080/"', "tcp/22: 10.0.0.5:20022", "10.0.2.15", "placed on nc-1",
                 'id="cluster">c1<', "/clc/api/1.0/instances/ins-00000001/",
                 "/clc/api/1.0/tasks/img-0000abcd:img-0000abcd:ins-00000001/", "instances.js"):
        assert text in page


def test_the_detail_page_does_not_offer_the_console_before_the_guest_runs(staff_client, records):
    make(records, 1, state="scheduled", node="nc-1", console_url="vnc://10.0.0.5:5901")
    page = staff_client.get("/clc/instances/ins-00000001/").content.decode()
    assert 'href="vnc://' not in page
    assert "available while it runs" in page


@pytest.mark.parametrize("state, enabled", [
    ("defined", {"run", "edit", "delete"}),
    ("stopped", {"run", "edit", "delete"}),
    ("failed", {"run", "edit", "delete"}),
    ("scheduled", {"stop", "delete"}),
    ("booting", {"stop", "delete"}),
    ("running", {"stop", "delete"}),
    ("stopping", {"delete"}),
    ("deleting", set()),
])
def test_the_buttons_enabled_follow_the_state(staff_client, records, state, enabled):
    make(records, 1, state=state)
    assert enabled_actions(staff_client.get("/clc/instances/ins-00000001/").content.decode()) == enabled


def test_the_detail_page_shows_the_current_runs_progress(staff_client, records):
    instance = make(records, 1, state="preparing", runs=1, node="nc-1")
    TaskTransaction.objects.create(tid=instance.tid, src_image_id="img-0000abcd", dst_image_id="img-0000abcd",
                                   instance_id=instance.instance_id, phase="preparing", state="downloading",
                                   progress=42)
    page = staff_client.get(instance.get_absolute_url()).content.decode()
    assert 'value="42"' in page
    assert "preparing / downloading · 42%" in page


def test_the_delete_button_asks_for_confirmation(staff_client, records):
    make(records, 1)
    page = staff_client.get("/clc/instances/ins-00000001/").content.decode()
    assert "return confirm('Delete Desktop 1?" in page


def test_the_api_the_page_polls_answers_the_staff_session_and_404s_once_deleted(staff_client, records):
    instance = make(records, 1, state="running", console_url="vnc://10.0.0.5:5901", guest_ip="10.0.2.15", runs=1)
    TaskTransaction.objects.create(tid=instance.tid, src_image_id="img-0000abcd", dst_image_id="img-0000abcd",
                                   instance_id=instance.instance_id, phase="preparing", progress=100, done=True)
    answer = staff_client.get("/clc/api/1.0/instances/ins-00000001/").json()
    assert (answer["state"], answer["console_url"], answer["guest_ip"], answer["tid"]) == (
        "running", "vnc://10.0.0.5:5901", "10.0.2.15", instance.tid)
    assert staff_client.get(f"/clc/api/1.0/tasks/{instance.tid}/").json()["progress"] == 100
    instance.delete()
    assert staff_client.get("/clc/api/1.0/instances/ins-00000001/").status_code == 404


def test_the_instance_script_is_served(staff_client):
    response = staff_client.get("/static/clc/instances.js")
    assert response.status_code == 200
    script = b"".join(response.streaming_content)
    assert b"setTimeout(refresh, PERIOD)" in script
    assert b"showGone" in script


# Run, stop, delete


def test_run_with_no_cluster_controller_online_shows_the_503_message(staff_client, records):
    make(records, 1)
    response = staff_client.post("/clc/instances/ins-00000001/run/", follow=True)
    assert response.redirect_chain == [("/clc/instances/ins-00000001/", 302)]
    page = response.content.decode()
    assert "Desktop 1 was not started: the cloud has no online cluster controller" in page
    assert "Traceback" not in page
    assert Instance.objects.get().state == "defined"


def test_stopping_an_instance_that_is_not_running_says_why(staff_client, records):
    make(records, 1, state="stopped")
    page = staff_client.post("/clc/instances/ins-00000001/stop/", follow=True).content.decode()
    assert "Desktop 1 was not stopped: instance ins-00000001 is stopped, not running" in page


def test_running_a_running_instance_says_to_stop_it_first(staff_client, records):
    make(records, 1, state="running", node="nc-1")
    page = staff_client.post("/clc/instances/ins-00000001/run/", follow=True).content.decode()
    assert "is running; stop it first" in page


def test_deleting_an_instance_already_being_deleted_says_so_on_the_list(staff_client, records):
    make(records, 1, state="deleting", node="nc-1")
    response = staff_client.post("/clc/instances/ins-00000001/delete/", follow=True)
    assert response.redirect_chain == [("/clc/instances/", 302)]
    assert "already being deleted" in response.content.decode()
    assert Instance.objects.filter(state="deleting").exists()


def test_an_instance_that_never_ran_is_deleted_at_once_and_the_list_says_so(staff_client, records):
    make(records, 1)
    response = staff_client.post("/clc/instances/ins-00000001/delete/", follow=True)
    assert response.redirect_chain == [("/clc/instances/", 302)]
    assert "Instance Desktop 1 (ins-00000001) deleted." in response.content.decode()
    assert not Instance.objects.exists()


def test_the_action_pages_only_take_post(staff_client, records):
    make(records, 1)
    assert staff_client.get("/clc/instances/ins-00000001/delete/").status_code == 405
    assert Instance.objects.exists()


# Editing


def test_editing_is_refused_while_it_runs(staff_client, records):
    make(records, 1, state="running", node="nc-1")
    response = staff_client.get("/clc/instances/ins-00000001/edit/", follow=True)
    assert response.redirect_chain == [("/clc/instances/ins-00000001/", 302)]
    assert "Desktop 1 is running; stop it before changing it." in response.content.decode()
    staff_client.post("/clc/instances/ins-00000001/edit/", {"name": "Renamed", "vm_type": records["huge"].pk})
    assert Instance.objects.get().name == "Desktop 1"


def test_a_stopped_instance_is_changed_and_keeps_where_it_ran(staff_client, records):
    make(records, 1, state="stopped", node="nc-1", cluster="c1", services=[22, 80])
    form = staff_client.get("/clc/instances/ins-00000001/edit/").content.decode()
    assert 'value="22, 80"' in form
    assert 'name="kind"' not in form and 'name="image"' not in form
    response = staff_client.post("/clc/instances/ins-00000001/edit/", {
        "name": "Renamed", "vm_type": records["huge"].pk, "persistent": "on", "services": "443",
        "pinned_node": "nc-1"})
    assert response.status_code == 302
    instance = Instance.objects.get()
    assert (instance.name, instance.vm_type, instance.persistent, instance.services, instance.pinned_node) == (
        "Renamed", records["huge"], True, [443], "nc-1")
    assert (instance.state, instance.node, instance.cluster, instance.kind) == ("stopped", "nc-1", "c1", "rvd")


def test_the_edit_form_refuses_bad_ports_with_the_fields_message(staff_client, records):
    make(records, 1)
    response = staff_client.post("/clc/instances/ins-00000001/edit/", {
        "name": "Desktop 1", "vm_type": records["tiny"].pk, "services": "80, 80"})
    assert response.status_code == 200
    assert response.context["form"].errors["services"] == ["a port is listed twice"]


# Who may see the pages, and malformed ids

PAGES = [("get", "/clc/instances/"), ("get", "/clc/instances/new/"), ("get", "/clc/instances/ins-00000001/"),
         ("get", "/clc/instances/ins-00000001/edit/"), ("post", "/clc/instances/ins-00000001/run/"),
         ("post", "/clc/instances/ins-00000001/stop/"), ("post", "/clc/instances/ins-00000001/delete/")]


@pytest.mark.parametrize("method, url", PAGES)
def test_anonymous_users_are_sent_to_log_in(client, records, method, url):
    make(records, 1)
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/clc/login/")


@pytest.mark.parametrize("method, url", PAGES)
def test_users_who_are_not_staff_get_403(client, records, method, url):
    make(records, 1)
    client.force_login(get_user_model().objects.create_user("pupil"))
    assert getattr(client, method)(url).status_code == 403
    assert Instance.objects.get().state == "defined"


@pytest.mark.parametrize("bad_id", ["ins-xyz", "ins-0000abc%3Bid", "%2E%2E", "img-0000abcd", "INS-00000001",
                                    "ins-00000002"])
@pytest.mark.parametrize("method, suffix", [("get", ""), ("get", "edit/"), ("post", "run/"), ("post", "stop/"),
                                            ("post", "delete/")])
def test_malformed_or_unknown_ids_are_a_404_page(staff_client, records, bad_id, method, suffix):
    make(records, 1)
    response = getattr(staff_client, method)(f"/clc/instances/{bad_id}/{suffix}")
    assert response.status_code == 404
    assert b"Traceback" not in response.content


# Runs that reach a cluster controller (a real REST call to the CC role on a live server)


@pytest.fixture
def cloud(live_server, cloud_at, tmp_path, records):
    config = cloud_at(live_server.url, data_dir=tmp_path / "host", name="aio")
    Server.objects.filter(role="nc").update(cluster=config.cluster, ip="127.0.0.1")
    Server.objects.create(name="aio", role="cc", ip="127.0.0.1", cluster=config.cluster, api_url=live_server.url,
                          state="online", last_seen=datetime.now(tz=UTC))
    enrolled_key("nc-1")
    ClusterNode.objects.create(name="nc-1", role="nc", ip="127.0.0.1", cpus=2, memory_mb=4096, disk_mb=10**5,
                               free_disk_mb=10**5, last_seen=datetime.now(tz=UTC))
    return config


@pytest.mark.django_db(transaction=True)
def test_run_places_it_and_the_page_shows_the_node_then_the_console(staff_client, records, cloud):
    make(records, 1, services=[80])
    response = staff_client.post("/clc/instances/ins-00000001/run/", follow=True)
    page = response.content.decode()
    assert f"Desktop 1 is scheduled on nc-1 (cluster {cloud.cluster})" in page
    assert "preparing / init · 0%" in page
    assert enabled_actions(page) == {"stop", "delete"}
    instance = Instance.objects.get()
    StatusFolder(missed_heartbeats=3, db_touch_seconds=60).fold(
        [InsStatus(insid=instance.instance_id, node="nc-1", seq=1, state="running", guest_ip="10.0.2.15")])
    page = staff_client.get(instance.get_absolute_url()).content.decode()
    assert f'href="{instance.console_url}"' in page and instance.console_url.startswith("vnc://127.0.0.1:")
    assert "10.0.2.15" in page


@pytest.mark.django_db(transaction=True)
def test_when_no_node_fits_the_page_says_why_for_each_node(staff_client, records, cloud):
    make(records, 1, vm_type=records["huge"])
    page = staff_client.post("/clc/instances/ins-00000001/run/", follow=True).content.decode()
    assert "Desktop 1 was not started: no cluster could run it" in page
    assert "nc-1: 3584 MB memory free, 65536 MB needed" in page
    assert Instance.objects.get().state == "defined"


@pytest.mark.django_db(transaction=True)
def test_deleting_a_running_instance_lands_on_the_list_even_when_its_node_confirmed_at_once(staff_client, records,
                                                                                            cloud):
    make(records, 1, services=[80])
    staff_client.post("/clc/instances/ins-00000001/run/")
    response = staff_client.post("/clc/instances/ins-00000001/delete/")
    assert (response.status_code, response["Location"]) == (302, "/clc/instances/")
    # The node confirms before the browser follows the redirect (the all-in-one's node answers within a second).
    StatusFolder(missed_heartbeats=3, db_touch_seconds=60).fold(
        [InsStatus(insid="ins-00000001", node="nc-1", seq=1, state="deleted")])
    assert not Instance.objects.exists()
    page = staff_client.get(response["Location"])
    assert page.status_code == 200
    assert "Desktop 1 is being removed from nc-1; it leaves this list when the node confirms." in page.content.decode()
