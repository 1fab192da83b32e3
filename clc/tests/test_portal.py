"""The student portal: a student sees and uses only their own desktops, starts and stops them through the instance
services, gets console files and one-time console tokens, a person without portal rights gets a clear 403 page,
noVNC is served from its package and nothing else, and idle desktops are stopped."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.cache import cache
from django.utils import timezone

from cc.models import ClusterNode
from clc.services import authz, portal, rfb
from clc.services.instances import InstanceError
from clc.services.status import StatusFolder
from luhyaapi.messages import InsStatus, TaskStatus
from luhyadb.models import Account, Image, ImageVersion, Instance, OwnerGroup, OwnerGroupPermission, Server, VMType
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db]

VNC = "vnc://10.0.0.5:6401"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # used-token marks and task progress of one test must not leak into the next
    yield
    cache.clear()


@pytest.fixture
def school():
    """A school owner-group whose people may read and start instances, an image with a file and a VM type."""
    OwnerGroup.objects.create(name="root", path="edu")
    group = OwnerGroup.objects.create(name="school", path="edu.school")
    OwnerGroupPermission.objects.create(owner_group=group, resource_type="instance", read=True, execute=True)
    image = Image.objects.create(image_id="img-0000abcd", name="Ubuntu desk", owner_group=group, current_version=1)
    ImageVersion.objects.create(image=image, number=1, label="1.0.0", size_bytes=1024, sha256="b" * 64,
                                format="qcow2")
    return {"group": group, "image": image, "tiny": VMType.objects.create(name="tiny", cpus=1, memory_mb=256,
                                                                          disk_gb=1)}


def person(school, username: str, role: str = "user"):
    # No password: hashing one costs more than the rest of a test, and force_login needs none.
    user = get_user_model().objects.create_user(username)
    Account.objects.create(user=user, owner_group=school["group"], role=role)
    return user


def desktop(school, number: int, owner, **changes) -> Instance:
    values = {"instance_id": f"ins-{number:08x}", "name": f"Desktop {number}", "kind": "rvd",
              "image": school["image"], "vm_type": school["tiny"], "owner_group": school["group"],
              "mac": "52:54:00:00:00:01", "assigned_to": owner} | changes
    return Instance.objects.create(**values)


@pytest.fixture
def alice(client, school):
    user = person(school, "alice")
    client.force_login(user)
    return user


@pytest.fixture
def bob(school):
    return person(school, "bob")


def listed(page: str) -> list[str]:
    return re.findall(r'data-insid="(ins-[0-9a-f]{8})"', page)


def enabled_actions(page: str) -> set[str]:
    """The actions whose buttons and links are on as the page is served."""
    tags = [tag for tag in re.findall(r"<(?:button|a)\b[^>]*>", page) if "data-action=" in tag]
    assert tags
    return {re.search(r'data-action="(\w+)"', tag)[1] for tag in tags
            if " disabled" not in tag and 'aria-disabled="true"' not in tag}


# Who sees what


def test_a_student_sees_only_their_own_desktops(client, school, alice, bob):
    desktop(school, 1, alice, name="Alice maths")
    desktop(school, 2, bob, name="Bob maths")
    desktop(school, 3, None, name="Nobody's")
    desktop(school, 4, alice, name="Alice server", kind="vs")  # a virtual server is not a desktop of the portal
    page = client.get("/portal/").content.decode()
    assert listed(page) == ["ins-00000001"]
    assert "Alice maths" in page and "Bob maths" not in page
    assert [row["instance_id"] for row in client.get("/portal/status/").json()["desktops"]] == ["ins-00000001"]


@pytest.mark.parametrize("method, suffix", [("get", ""), ("get", "status/"), ("post", "start/"), ("post", "stop/"),
                                            ("post", "token/"), ("get", "client/")])
def test_another_students_desktop_does_not_exist_for_them(client, school, alice, bob, method, suffix):
    desktop(school, 2, bob, state="running", console_url=VNC, runs=1)
    response = getattr(client, method)(f"/portal/desktops/ins-00000002/{suffix}")
    assert response.status_code == 404
    assert Instance.objects.get().state == "running"


@pytest.mark.parametrize("bad_id", ["ins-zzzz", "img-0000abcd", "ins-00000009"])
def test_malformed_or_unknown_ids_are_a_404(client, school, alice, bad_id):
    assert client.get(f"/portal/desktops/{bad_id}/").status_code == 404


def test_a_login_without_portal_rights_gets_a_clear_403_page(client, school):
    client.force_login(get_user_model().objects.create_user("visitor"))  # no eduCloud account
    response = client.get("/portal/")
    page = response.content.decode()
    assert response.status_code == 403
    assert "Not allowed" in page and "eduCloud account" in page and "Traceback" not in page


def test_a_person_who_may_only_read_a_desktop_may_not_start_it_or_open_its_console(client, school):
    reader_group = OwnerGroup.objects.create(name="auditors", path="edu.school.audit")
    OwnerGroupPermission.objects.create(owner_group=reader_group, resource_type="instance", read=True)
    auditor = get_user_model().objects.create_user("auditor")
    Account.objects.create(user=auditor, owner_group=reader_group, role="poweruser")
    desktop(school, 1, None, owner_group=reader_group, state="running", console_url=VNC, runs=1)
    client.force_login(auditor)
    assert client.get("/portal/").status_code == 200
    for action in ("start", "stop", "token"):
        response = client.post(f"/portal/desktops/ins-00000001/{action}/")
        assert response.status_code == 403 and b"Not allowed" in response.content
    client_file = client.get("/portal/desktops/ins-00000001/client/")  # the .vnc file is a way in, too
    assert client_file.status_code == 403 and b"[connection]" not in client_file.content
    assert client.get("/portal/status/").json()["desktops"][0]["actions"] == {
        "start": False, "stop": False, "connect": False, "rdp": False}


def test_a_group_that_grants_execute_without_read_starts_and_stops_from_the_portal_as_from_the_api(
        client, school, monkeypatch):
    starters = OwnerGroup.objects.create(name="starters", path="edu.school.start")
    OwnerGroupPermission.objects.create(owner_group=starters, resource_type="instance", execute=True)
    operator = get_user_model().objects.create_user("operator")
    Account.objects.create(user=operator, owner_group=starters, role="poweruser")
    desktop(school, 1, None, owner_group=starters)
    started = []
    monkeypatch.setattr(portal, "run_instance", lambda instance: started.append(instance.instance_id) or instance)
    client.force_login(operator)
    assert client.post("/portal/desktops/ins-00000001/start/").status_code == 302
    assert started == ["ins-00000001"]
    assert client.get("/portal/desktops/ins-00000001/").status_code == 403  # reading desktops is not granted


def test_anonymous_people_are_sent_to_log_in_and_come_back_to_the_page(client, school):
    user = person(school, "carol")
    user.set_password("carol-password-1")
    user.save()
    desktop(school, 1, user)
    response = client.get("/portal/desktops/ins-00000001/")
    assert response.status_code == 302
    assert response["Location"] == "/clc/login/?next=/portal/desktops/ins-00000001/"
    response = client.post("/clc/login/", {"username": "carol", "password": "carol-password-1",
                                           "next": "/portal/desktops/ins-00000001/"})
    assert response["Location"] == "/portal/desktops/ins-00000001/"
    assert client.get(response["Location"]).status_code == 200


def test_a_student_who_logs_in_without_a_next_page_lands_on_the_portal(client, school):
    user = person(school, "dave")
    user.set_password("dave-password-1")
    user.save()
    response = client.post("/clc/login/", {"username": "dave", "password": "dave-password-1"}, follow=True)
    assert response.redirect_chain[-1][0] == "/portal/"
    assert response.status_code == 200 and "My desktops" in response.content.decode()


# States, progress and buttons


@pytest.mark.parametrize("state, actions", [
    ("defined", {"start"}), ("stopped", {"start"}), ("failed", {"start"}), ("scheduled", {"stop"}),
    ("preparing", {"stop"}), ("booting", {"stop"}), ("running", {"stop", "connect"}), ("stopping", set()),
])
def test_the_buttons_follow_the_state(client, school, alice, state, actions):
    desktop(school, 1, alice, state=state, console_url=VNC, runs=1)
    (row,) = client.get("/portal/status/").json()["desktops"]
    assert {name for name, on in row["actions"].items() if on} == actions
    assert enabled_actions(client.get("/portal/").content.decode()) == actions
    assert enabled_actions(client.get("/portal/desktops/ins-00000001/").content.decode()) == actions


def test_the_progress_of_a_start_follows_the_nodes_download(client, school, alice):
    instance = desktop(school, 1, alice, state="preparing", runs=1, node="nc-1")
    folder = StatusFolder(missed_heartbeats=3, db_touch_seconds=60)
    folder.fold([TaskStatus(tid=instance.tid, phase="preparing", state="downloading", progress=42)])
    row = client.get("/portal/desktops/ins-00000001/status/").json()
    assert (row["progress"], row["step"]) == (42, "Copying its image (42%)")
    folder.fold([TaskStatus(tid=instance.tid, phase="preparing", state="cloning", progress=99)])
    assert client.get("/portal/desktops/ins-00000001/status/").json()["step"] == "Preparing its disk"
    Instance.objects.filter(pk=instance.pk).update(state="booting")
    assert client.get("/portal/desktops/ins-00000001/status/").json()["progress"] == 100
    Instance.objects.filter(pk=instance.pk).update(state="running", console_url=VNC)
    assert client.get("/portal/desktops/ins-00000001/status/").json()["progress"] is None


def test_a_failed_desktop_says_why(client, school, alice):
    desktop(school, 1, alice, state="failed", message="no node has 256 MB free")
    assert "no node has 256 MB free" in client.get("/portal/").content.decode()


# Start and stop through the instance services (a real REST call to the CC role on a live server)


@pytest.fixture
def cloud(live_server, cloud_at, tmp_path, school):
    config = cloud_at(live_server.url, data_dir=tmp_path / "host", name="aio")
    Server.objects.create(name="nc-1", role="nc", ip="127.0.0.1", cluster=config.cluster, state="online")
    Server.objects.create(name="aio", role="cc", ip="127.0.0.1", cluster=config.cluster, api_url=live_server.url,
                          state="online", last_seen=datetime.now(tz=UTC))
    enrolled_key("nc-1")
    ClusterNode.objects.create(name="nc-1", role="nc", ip="127.0.0.1", cpus=2, memory_mb=4096, disk_mb=10**5,
                               free_disk_mb=10**5, last_seen=datetime.now(tz=UTC))
    return config


@pytest.mark.django_db(transaction=True)
def test_start_and_stop_from_the_portal_run_and_stop_the_instance_on_its_cluster(client, alice, school, cloud):
    desktop(school, 1, alice)
    response = client.post("/portal/desktops/ins-00000001/start/", {"next": "/portal/desktops/ins-00000001/"})
    assert response["Location"] == "/portal/desktops/ins-00000001/"
    instance = Instance.objects.get()
    assert (instance.state, instance.node, instance.runs) == ("scheduled", "nc-1", 1)
    assert timezone.now() - instance.last_activity < timedelta(seconds=30)  # the idle clock starts with the run
    assert "Desktop 1 is starting" in client.get("/portal/").content.decode()
    StatusFolder(missed_heartbeats=3, db_touch_seconds=60).fold(
        [InsStatus(insid=instance.instance_id, node="nc-1", seq=1, state="running")])
    assert client.post("/portal/desktops/ins-00000001/stop/")["Location"] == "/portal/"
    assert Instance.objects.get().state == "stopping"


def test_a_refused_start_is_shown_with_its_reason_not_a_traceback(client, school, alice):
    desktop(school, 1, alice)
    page = client.post("/portal/desktops/ins-00000001/start/", follow=True).content.decode()
    assert "Desktop 1 was not started: the cloud has no online cluster controller" in page
    assert Instance.objects.get().last_activity is None


def test_a_start_never_goes_back_to_another_site(client, school, alice, monkeypatch):
    desktop(school, 1, alice)
    monkeypatch.setattr(portal, "run_instance", lambda instance: instance)
    response = client.post("/portal/desktops/ins-00000001/start/", {"next": "https://evil.example/"})
    assert response["Location"] == "/portal/"


def test_the_action_pages_only_take_post(client, school, alice):
    desktop(school, 1, alice)
    for action in ("start", "stop", "token"):
        assert client.get(f"/portal/desktops/ins-00000001/{action}/").status_code == 405


# Console files for native clients


def test_the_vnc_file_names_the_consoles_host_and_port(client, school, alice):
    desktop(school, 1, alice, state="running", console_url="vnc://203.0.113.7:6401", runs=1)
    response = client.get("/portal/desktops/ins-00000001/client/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-vnc"
    assert response["Content-Disposition"] == 'attachment; filename="ins-00000001.vnc"'
    assert response.content.decode() == "[connection]\nhost=203.0.113.7\nport=6401\n"


def test_the_vnc_file_carries_the_runs_password_as_viewers_store_it(client, school, alice):
    desktop(school, 1, alice, state="running", console_url="vnc://203.0.113.7:6401", runs=1,
            console_password="Pw4run99")
    text = client.get("/portal/desktops/ins-00000001/client/").content.decode()
    assert text == ("[connection]\nhost=203.0.113.7\nport=6401\n"
                    f"password={rfb.viewer_file_password('Pw4run99')}\n")
    assert "Pw4run99" not in text


def test_the_console_password_is_shown_to_who_may_execute_the_instance_and_to_nobody_else(client, school):
    reader_group = OwnerGroup.objects.create(name="auditors", path="edu.school.audit")
    OwnerGroupPermission.objects.create(owner_group=reader_group, resource_type="instance", read=True)
    auditor = get_user_model().objects.create_user("auditor")
    Account.objects.create(user=auditor, owner_group=reader_group, role="poweruser")
    teacher = person(school, "teacher", role="poweruser")
    desktop(school, 1, None, owner_group=reader_group, state="running", console_url=VNC, runs=1,
            console_password="Pw4run99")
    desktop(school, 2, None, state="running", console_url=VNC, runs=1, console_password="Other123")
    client.force_login(auditor)
    assert "Pw4run99" not in client.get("/clc/instances/ins-00000001/").content.decode()
    assert client.get("/clc/api/1.0/instances/ins-00000001/console/").status_code == 403
    client.force_login(teacher)
    assert '<code id="console-password">Other123</code>' in client.get("/clc/instances/ins-00000002/").content.decode()
    assert client.get("/clc/api/1.0/instances/ins-00000002/console/").json() == {
        "url": VNC, "protocol": "vnc", "password": "Other123"}


def test_an_rdp_console_has_no_vnc_password_to_show(client, school):
    teacher = person(school, "teacher", role="poweruser")
    desktop(school, 1, None, state="running", console_url="rdp://10.0.0.5:6402", runs=1, console_password="Pw4run99")
    client.force_login(teacher)
    assert "Pw4run99" not in client.get("/clc/instances/ins-00000001/").content.decode()
    assert client.get("/clc/api/1.0/instances/ins-00000001/console/").json() == {
        "url": "rdp://10.0.0.5:6402", "protocol": "rdp", "password": ""}


def test_an_rdp_console_gets_an_rdp_file(client, school, alice):
    desktop(school, 1, alice, state="running", console_url="rdp://10.0.0.5:6402", runs=1)
    response = client.get("/portal/desktops/ins-00000001/client/")
    assert response["Content-Type"] == "application/x-rdp"
    assert response["Content-Disposition"] == 'attachment; filename="ins-00000001.rdp"'
    assert response.content.decode() == "full address:s:10.0.0.5:6402\r\n"


@pytest.mark.parametrize("state, console_url", [("stopped", VNC), ("booting", VNC), ("running", ""),
                                                ("running", "vnc://10.0.0.5:6401\nhost=evil"),
                                                ("running", "javascript:alert(1)"), ("running", "vnc://10.0.0.5")])
def test_no_console_file_without_a_plain_console_of_a_running_desktop(client, school, alice, state, console_url):
    desktop(school, 1, alice, state=state, console_url=console_url, runs=1)
    response = client.get("/portal/desktops/ins-00000001/client/", follow=True)
    assert response.redirect_chain[0][0] == "/portal/desktops/ins-00000001/"
    assert "start it and wait until it runs" in response.content.decode()


# One-time console tokens


def _token(client, insid: str = "ins-00000001"):
    return client.post(f"/portal/desktops/{insid}/token/")


def test_a_running_desktop_gets_a_console_token_naming_the_proxys_port(client, school, alice, settings):
    desktop(school, 1, alice, state="running", console_url=VNC, runs=1)
    answer = _token(client).json()
    assert answer["port"] == settings.EDUCLOUD.console_port
    assert answer["path"] == f"/console/{answer['token']}" and answer["expires_seconds"] == 60
    session = portal.redeem_console_token(answer["token"])
    assert (session.user_id, session.instance_id, session.endpoint) == (
        alice.pk, "ins-00000001", portal.ConsoleEndpoint("vnc", "10.0.0.5", 6401))
    assert timezone.now() - Instance.objects.get().last_activity < timedelta(seconds=30)


@pytest.mark.parametrize("state, console_url, reason", [("booting", VNC, "it is booting"),
                                                        ("running", "rdp://10.0.0.5:6402", "an RDP console")])
def test_no_console_token_without_a_running_vnc_console(client, school, alice, state, console_url, reason):
    desktop(school, 1, alice, state=state, console_url=console_url, runs=1)
    response = _token(client)
    assert response.status_code == 409 and reason in response.json()["detail"]


def test_a_console_token_is_good_only_once(client, school, alice):
    desktop(school, 1, alice, state="running", console_url=VNC, runs=1)
    token = _token(client).json()["token"]
    portal.redeem_console_token(token)
    with pytest.raises(portal.ConsoleRefused, match="used already"):
        portal.redeem_console_token(token)


def test_an_expired_console_token_is_refused(client, school, alice, monkeypatch):
    desktop(school, 1, alice, state="running", console_url=VNC, runs=1)
    token = _token(client).json()["token"]

    class Later:
        @staticmethod
        def time() -> float:
            return time.time() + portal.CONSOLE_TOKEN_SECONDS + 1

    monkeypatch.setattr(signing, "time", Later)
    with pytest.raises(portal.ConsoleRefused, match="expired"):
        portal.redeem_console_token(token)


def test_a_token_changed_to_name_another_person_or_desktop_is_refused(client, school, alice, bob):
    desktop(school, 1, alice, state="running", console_url=VNC, runs=1)
    desktop(school, 2, bob, state="running", console_url=VNC, runs=1)
    token = _token(client).json()["token"]
    payload = signing.TimestampSigner(salt=portal.TOKEN_SALT).unsign_object(token)
    forged = signing.TimestampSigner(salt="another salt").sign_object(payload | {"u": bob.pk})
    value, timestamp, signature = token.rsplit(":", 2)
    tampered = signing.b64_encode(signing.JSONSerializer().dumps(payload | {"i": "ins-00000002"})).decode()
    for bad in (forged, f"{tampered}:{timestamp}:{signature}", "", "not-a-token"):
        with pytest.raises(portal.ConsoleRefused, match="not a console token"):
            portal.redeem_console_token(bad)


def test_a_token_is_refused_once_the_desktop_was_given_to_someone_else(client, school, alice, bob):
    instance = desktop(school, 1, alice, state="running", console_url=VNC, runs=1)
    token = _token(client).json()["token"]
    Instance.objects.filter(pk=instance.pk).update(assigned_to=bob)
    with pytest.raises(portal.ConsoleRefused, match="may not use"):
        portal.redeem_console_token(token)


def test_a_token_of_an_earlier_run_is_refused(client, school, alice):
    instance = desktop(school, 1, alice, state="running", console_url=VNC, runs=1)
    token = _token(client).json()["token"]
    Instance.objects.filter(pk=instance.pk).update(runs=2)
    with pytest.raises(portal.ConsoleRefused, match="not running"):
        portal.redeem_console_token(token)


def test_a_token_is_issued_only_to_someone_the_rule_lets_execute_the_desktop(school, alice, bob):
    instance = desktop(school, 1, alice, state="running", console_url=VNC, runs=1)
    with pytest.raises(authz.Denied) as denied:
        portal.issue_console_token(authz.actor_for(bob), instance)
    assert denied.value.status == 404


def test_an_open_session_ends_when_the_desktop_stops_or_is_given_away(client, school, alice, bob):
    instance = desktop(school, 1, alice, state="running", console_url=VNC, runs=1)
    session = portal.redeem_console_token(_token(client).json()["token"])
    Instance.objects.filter(pk=instance.pk).update(last_activity=timezone.now() - timedelta(hours=1))
    portal.keep_console_session(session)
    assert timezone.now() - Instance.objects.get().last_activity < timedelta(seconds=30)
    Instance.objects.filter(pk=instance.pk).update(assigned_to=bob)
    with pytest.raises(portal.ConsoleRefused):
        portal.keep_console_session(session)
    Instance.objects.filter(pk=instance.pk).update(assigned_to=alice, state="stopping")
    with pytest.raises(portal.ConsoleRefused):
        portal.keep_console_session(session)


# The console page and noVNC


def test_an_administrator_opens_a_virtual_servers_console_in_the_browser_but_runs_it_from_the_console(
        client, school):
    teacher = person(school, "teacher", role="poweruser")
    desktop(school, 1, None, kind="vs", name="Web server", state="running", console_url=VNC, runs=1)
    client.force_login(teacher)
    page = client.get("/portal/desktops/ins-00000001/").content.decode()
    assert 'id="screen"' in page and '<a href="/clc/instances/ins-00000001/">Back to the instance</a>' in page
    assert 'data-action="start"' not in page and 'data-action="stop"' not in page
    status = client.get("/portal/desktops/ins-00000001/status/").json()
    assert (status["kind"], status["actions"]) == ("vs", {"start": False, "stop": False, "connect": True, "rdp": False})
    session = portal.redeem_console_token(_token(client).json()["token"])
    assert (session.user_id, session.instance_id) == (teacher.pk, "ins-00000001")
    for action in ("start", "stop"):  # a server is run and stopped from the admin console, not the portal
        assert client.post(f"/portal/desktops/ins-00000001/{action}/").status_code == 404
    assert "Web server" not in client.get("/portal/").content.decode()  # the portal lists remote desktops only
    assert 'href="/portal/desktops/ins-00000001/">in the browser</a>' in client.get(
        "/clc/instances/ins-00000001/").content.decode()


def test_a_local_desktop_has_no_console_page_on_the_cloud(client, school):
    client.force_login(person(school, "teacher", role="poweruser"))
    desktop(school, 1, None, kind="lvd", state="running", console_url=VNC, runs=1)
    assert client.get("/portal/desktops/ins-00000001/").status_code == 404


def test_the_console_page_loads_novnc_from_the_portal_and_never_names_the_vnc_port(client, school, alice):
    desktop(school, 1, alice, state="running", console_url=VNC, runs=1)
    page = client.get("/portal/desktops/ins-00000001/").content.decode()
    assert '"rfb": "/portal/novnc/core/rfb.js"' in page and 'id="screen"' in page
    assert '"token": "/portal/desktops/ins-00000001/token/"' in page
    assert "6401" not in page and "10.0.0.5" not in page
    assert "Disconnect" in page and "/portal/desktops/ins-00000001/client/" in page


def test_without_novnc_the_console_page_offers_the_connection_file(client, school, alice, monkeypatch, tmp_path):
    monkeypatch.setattr(portal, "NOVNC_DIR", tmp_path / "no-novnc")
    desktop(school, 1, alice, state="running", console_url=VNC, runs=1)
    page = client.get("/portal/desktops/ins-00000001/").content.decode()
    assert "noVNC) is not installed" in page and 'id="screen"' not in page
    assert "/portal/desktops/ins-00000001/client/" in page
    assert client.get("/portal/novnc/core/rfb.js").status_code == 404


@pytest.mark.skipif(not portal.novnc_installed(), reason="Debian's novnc package is not installed here")
def test_novncs_modules_are_served_from_the_package(client, alice):
    response = client.get("/portal/novnc/core/rfb.js")
    assert response.status_code == 200
    assert b"export default class RFB" in b"".join(response.streaming_content)
    assert client.get("/portal/novnc/vendor/pako/lib/zlib/inflate.js").status_code == 200


@pytest.mark.parametrize("path", [
    "vnc.html", "core/../vnc.html", "core/../../../etc/passwd", "core/missing.js", "/etc/passwd", "core/",
    # Names the file system refuses (too long, NUL) or that no noVNC file has: still just "no such file".
    "core/" + "a" * 300, "core/" + "a" * 300 + "/rfb.js", "core/" + "/".join(["b" * 200] * 30), "core/rfb.js%00.txt",
    "core/%00", "core/rfb.js%0a", "core/%C3%A9t%C3%A9.js", "core/%FF%FE.js", "core\\rfb.js", "core/./rfb.js/",
    "vendor/" + "%41" * 5000,
])
def test_nothing_but_novncs_modules_is_served_and_anything_else_is_a_404(client, alice, path):
    client.raise_request_exception = False
    assert client.get(f"/portal/novnc/{path}").status_code == 404


def test_novnc_needs_a_login(client):
    assert client.get("/portal/novnc/core/rfb.js").status_code == 302


def test_the_portal_scripts_are_served(client):
    for name in ("portal.js", "portal-console.js", "portal.css"):
        assert client.get(f"/static/clc/{name}").status_code == 200


# Idle desktops


def _idle(school, number, owner, minutes_ago, **changes) -> Instance:
    last = timezone.now() - timedelta(minutes=minutes_ago) if minutes_ago is not None else None
    values = {"state": "running", "console_url": VNC, "runs": 1, "node": "nc-1", "last_activity": last}
    return desktop(school, number, owner, **(values | changes))


def test_idle_stop_stops_only_running_remote_desktops_idle_longer_than_the_limit(school, alice, monkeypatch,
                                                                                caplog):
    stopped = []
    monkeypatch.setattr(portal, "stop_instance", lambda instance: stopped.append(instance.instance_id))
    _idle(school, 1, alice, 90)                              # idle: stopped
    _idle(school, 2, alice, 10)                              # in use
    _idle(school, 3, alice, 90, kind="vs")                   # a virtual server is never stopped for idling
    _idle(school, 4, alice, 90, kind="lvd")                  # nor a local desktop
    _idle(school, 5, alice, 90, state="booting")             # not running yet
    _idle(school, 6, alice, 90, build_tid="img-0000abcd:img-0000abcd:ins-00000006")  # an image wizard's VM
    with caplog.at_level(logging.INFO, logger="clc.services.portal"):
        assert portal.stop_idle_desktops(60) == ["ins-00000001"]
    assert stopped == ["ins-00000001"]
    assert "no console session for 90 minutes (idle limit 60 minutes)" in caplog.text


def test_idle_stop_starts_the_clock_of_a_desktop_started_elsewhere(school, alice, monkeypatch):
    monkeypatch.setattr(portal, "stop_instance", lambda instance: pytest.fail("stopped without an idle time"))
    instance = _idle(school, 1, alice, None)
    assert portal.stop_idle_desktops(60) == []
    assert timezone.now() - Instance.objects.get(pk=instance.pk).last_activity < timedelta(seconds=30)


def test_idle_stop_zero_means_never(school, alice, monkeypatch):
    monkeypatch.setattr(portal, "stop_instance", lambda instance: pytest.fail("stopped although never was set"))
    _idle(school, 1, alice, 60 * 24 * 30)
    assert portal.stop_idle_desktops(0) == []


def test_idle_stop_logs_a_refused_stop_and_goes_on(school, alice, monkeypatch, caplog):
    def stop(instance):
        if instance.instance_id == "ins-00000001":
            raise InstanceError(503, "cluster 'cluster1' has no online cluster controller")

    monkeypatch.setattr(portal, "stop_instance", stop)
    _idle(school, 1, alice, 90)
    _idle(school, 2, alice, 90)
    assert portal.stop_idle_desktops(60) == ["ins-00000002"]
    assert "idle desktop ins-00000001 (Desktop 1) not stopped: cluster 'cluster1' has no online" in caplog.text


def test_idle_stop_goes_on_when_the_cluster_controller_is_away(school, alice):
    _idle(school, 1, alice, 90)
    # No cluster controller is online, so the real stop_instance refuses: the desktop stays, nothing raises.
    assert portal.stop_idle_desktops(60) == []
    assert Instance.objects.get().state == "running"
