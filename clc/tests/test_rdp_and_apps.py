"""RDP desktops and published apps (issue 15, parts 4 and 5): a desktop of an image whose guests serve Remote Desktop
gets its 3389 forwarded by the cluster and reported as ``rdp``, and its student a .rdp file with that address, their
login and the screen they chose; a desktop whose image serves no RDP keeps its VNC console and says so when RDP is
asked for; an image's published apps are offered per class and opened on the student's desktop of the pool, each as
a RemoteApp file and an rdesktop SeamlessRDP command line; bad input is a 4xx naming the field. Runs are placed by a
real cluster controller's API (this test server's CC role)."""

from __future__ import annotations

import html
import re
import shlex

import pytest

from cc.models import PortLease
from clc.services.apps import SEAMLESS_SHELL
from clc.services.instances import InstanceError, guest_services
from clc.services.pools import create_pool
from clc.tests.classes import as_, person, report
from luhyadb.models import DesktopPool, Image, ImageApp, Instance

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

WRITER = r"C:\Program Files\LibreOffice\program\swriter.exe"


def rdp_pool(schools, rdp: bool = True) -> DesktopPool:
    image = schools["images"]["edu.s1"]
    Image.objects.filter(pk=image.pk).update(rdp=rdp)
    ImageApp.objects.create(image=image, name="Notepad", program="||notepad")
    ImageApp.objects.create(image=image, name="Writer", program=WRITER, icon="https://school.example/writer.png")
    image.refresh_from_db()
    return create_pool(name="Class 1 desktops", image=image, vm_type=schools["tiny"], owner_group=schools["c1"],
                       max_size=5)


def claimed(student, pool: DesktopPool) -> Instance:
    answer = as_(student).post(f"/portal/pools/{pool.pool_id}/claim/")
    assert answer.status_code == 302, answer.content
    return Instance.objects.get(pool=pool, assigned_to=student)


def rdp_lines(response) -> dict[str, str]:
    """A .rdp file's settings by name (``name:type:value`` lines, each ending in CR LF)."""
    assert response["Content-Type"] == "application/x-rdp" and "attachment" in response["Content-Disposition"]
    text = response.content.decode()
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    return {name: value for name, _, value in (line.split(":", 2) for line in text.split("\r\n") if line)}


def test_a_desktop_of_an_rdp_image_has_its_remote_desktop_forwarded_and_a_rdp_file_with_login_and_screen(schools):
    pool = rdp_pool(schools)
    student = schools["students"][0]
    desktop = claimed(student, pool)
    port = PortLease.objects.get(instance_id=desktop.instance_id, purpose="tcp/3389").port  # the CC leased it
    report(desktop, "running")
    desktop.refresh_from_db()
    assert desktop.access["rdp"] == f"rdp://127.0.0.1:{port}" and "tcp/3389" not in desktop.access
    client = as_(student)
    window = rdp_lines(client.get(f"/portal/desktops/{desktop.instance_id}/rdp/?screen=1280x800"))
    assert (window["full address"], window["server port"], window["username"]) == (f"127.0.0.1:{port}", str(port),
                                                                                      "s01")
    assert (window["screen mode id"], window["desktopwidth"], window["desktopheight"]) == ("1", "1280", "800")
    full = rdp_lines(client.get(f"/portal/desktops/{desktop.instance_id}/rdp/"))
    assert full["screen mode id"] == "2" and "desktopwidth" not in full
    assert full["authentication level"] == "2" and full["redirectclipboard"] == "1"
    status = client.get(f"/portal/desktops/{desktop.instance_id}/status/").json()
    assert (status["console"], status["rdp"], status["actions"]["rdp"]) == ("vnc", True, True)
    assert "Download .rdp" in client.get(f"/portal/desktops/{desktop.instance_id}/").content.decode()


def test_a_rdp_file_of_another_students_desktop_is_a_404_naming_the_desktop_and_a_bad_screen_a_400(schools):
    pool = rdp_pool(schools)
    alice, bob = schools["students"][:2]
    desktop = claimed(alice, pool)
    report(desktop, "running")
    for path in (f"/portal/desktops/{desktop.instance_id}/rdp/",
                 f"/portal/desktops/{desktop.instance_id}/apps/{ImageApp.objects.first().pk}/rdp/"):
        refused = as_(bob).get(path)
        assert refused.status_code == 404 and b"[connection]" not in refused.content
        assert f"Desktop: you have no desktop {desktop.instance_id}" in refused.content.decode()
    other_school = as_(schools["teacher2"]).get(f"/portal/desktops/{desktop.instance_id}/rdp/")
    assert other_school.status_code == 404 and "full address" not in other_school.content.decode()
    bad = as_(alice).get(f"/portal/desktops/{desktop.instance_id}/rdp/?screen=99999x1%0D%0Ausername:s:x")
    assert bad.status_code == 400 and "Screen: Select a valid choice" in html.unescape(bad.content.decode())


def test_a_desktop_whose_image_serves_no_rdp_keeps_its_vnc_console_and_says_so_when_rdp_is_asked_for(schools):
    pool = rdp_pool(schools, rdp=False)
    student = schools["students"][0]
    desktop = claimed(student, pool)
    assert not PortLease.objects.filter(purpose="tcp/3389").exists()  # nothing forwarded for a guest without RDP
    report(desktop, "running")
    desktop.refresh_from_db()
    assert "rdp" not in desktop.access
    client = as_(student)
    asked = client.get(f"/portal/desktops/{desktop.instance_id}/rdp/", follow=True)
    assert asked.redirect_chain == [(f"/portal/desktops/{desktop.instance_id}/", 302)]
    page = asked.content.decode()
    assert "serves no Remote Desktop (RDP)" in page and "use its console in the browser" in page
    assert "Download .rdp" not in page
    status = client.get(f"/portal/desktops/{desktop.instance_id}/status/").json()
    assert (status["console"], status["rdp"], status["actions"]["connect"], status["actions"]["rdp"]) == (
        "vnc", False, True, False)


def test_a_rdp_file_is_given_only_once_the_desktop_runs(schools):
    pool = rdp_pool(schools)
    student = schools["students"][0]
    desktop = claimed(student, pool)  # scheduled: its forward is leased, not yet reported
    asked = as_(student).get(f"/portal/desktops/{desktop.instance_id}/rdp/", follow=True)
    assert asked.redirect_chain and "its Remote Desktop file is here once it runs" in asked.content.decode()


def test_published_apps_are_offered_per_class_and_opening_one_gets_the_students_desktop_of_the_pool_once(schools):
    pool = rdp_pool(schools)
    student = schools["students"][0]
    client = as_(student)
    page = client.get("/portal/apps/").content.decode()
    assert re.findall(r'data-group="([^"]+)"', page) == ["edu.s1.c1"]
    assert page.index("Notepad") < page.index("Writer") and "https://school.example/writer.png" in page
    writer = ImageApp.objects.get(name="Writer")
    opened = client.post(f"/portal/pools/{pool.pool_id}/apps/{writer.pk}/open/")
    desktop = Instance.objects.get(pool=pool, assigned_to=student)
    assert (opened.status_code, opened["Location"]) == (302, f"/portal/desktops/{desktop.instance_id}/#app-{writer.pk}")
    assert desktop.state == "scheduled" and desktop.runs == 1
    again = client.post(f"/portal/pools/{pool.pool_id}/apps/{ImageApp.objects.get(name='Notepad').pk}/open/")
    assert again.status_code == 302 and Instance.objects.filter(pool=pool).count() == 1  # reused, not a second one
    desktop.refresh_from_db()
    assert desktop.runs == 1
    # Another school's people are offered none of it, and cannot open it.
    teacher2 = as_(schools["teacher2"])
    assert "Writer" not in teacher2.get("/portal/apps/").content.decode()
    assert teacher2.post(f"/portal/pools/{pool.pool_id}/apps/{writer.pk}/open/").status_code == 404


def test_an_app_is_a_remoteapp_file_and_a_seamlessrdp_command_once_its_desktop_runs(schools):
    pool = rdp_pool(schools)
    student = schools["students"][0]
    desktop = claimed(student, pool)
    report(desktop, "running")
    port = PortLease.objects.get(instance_id=desktop.instance_id, purpose="tcp/3389").port
    client = as_(student)
    notepad, writer = ImageApp.objects.get(name="Notepad"), ImageApp.objects.get(name="Writer")
    remote = rdp_lines(client.get(f"/portal/desktops/{desktop.instance_id}/apps/{notepad.pk}/rdp/"))
    assert (remote["remoteapplicationmode"], remote["remoteapplicationprogram"], remote["remoteapplicationname"],
            remote["full address"], remote["username"]) == ("1", "||notepad", "Notepad", f"127.0.0.1:{port}", "s01")
    page = client.get(f"/portal/desktops/{desktop.instance_id}/").content.decode()
    commands = [shlex.split(html.unescape(text)) for text in re.findall(r'<code class="command">([^<]+)</code>', page)]
    assert commands == [["rdesktop", "-A", SEAMLESS_SHELL, "-s", "notepad", "-u", "s01", f"127.0.0.1:{port}"],
                        ["rdesktop", "-A", SEAMLESS_SHELL, "-s", WRITER, "-u", "s01", f"127.0.0.1:{port}"]]
    assert f'id="app-{writer.pk}"' in page
    # An app another image publishes is no app of this desktop: a 404 naming the app.
    other = ImageApp.objects.create(image=schools["images"]["edu.s2"], name="Paint", program="||mspaint")
    refused = client.get(f"/portal/desktops/{desktop.instance_id}/apps/{other.pk}/rdp/")
    assert refused.status_code == 404 and "App: " in refused.content.decode()
    assert client.post(f"/portal/desktops/{desktop.instance_id}/apps/{other.pk}/open/").status_code == 404


def test_an_assigned_desktops_apps_are_offered_and_opening_one_starts_it(schools):
    image = schools["images"]["edu.s1"]
    ImageApp.objects.create(image=image, name="Notepad", program="||notepad")
    student = person("loner", schools["c1"])
    desktop = Instance.objects.create(instance_id="ins-0000beef", name="Loner's desktop", kind="rvd", image=image,
                                      vm_type=schools["tiny"], owner_group=schools["c1"], assigned_to=student,
                                      mac="52:54:00:00:be:ef")
    client = as_(student)
    page = client.get("/portal/apps/").content.decode()
    assert "Notepad" in page and "on Loner&#x27;s desktop" in page
    opened = client.post(f"/portal/desktops/{desktop.instance_id}/apps/{ImageApp.objects.get().pk}/open/")
    assert opened.status_code == 302
    desktop.refresh_from_db()
    assert (desktop.state, desktop.runs) == ("scheduled", 1)


def test_a_run_of_an_rdp_image_forwards_3389_besides_its_services_up_to_the_limit(schools):
    image = schools["images"]["edu.s1"]
    image.rdp = True
    desktop = Instance(name="Busy", image=image, services=[80])
    assert guest_services(desktop) == [80, 3389]
    desktop.services = [3389, 22]
    assert guest_services(desktop) == [3389, 22]
    desktop.services = list(range(20, 28))
    with pytest.raises(InstanceError, match="forwards at most 8") as refused:
        guest_services(desktop)
    assert refused.value.status == 409
    image.rdp = False
    assert guest_services(desktop) == list(range(20, 28))


API_IMAGE = {"name": "Windows 10 lab", "os_type": "windows", "owner_group": "edu.s1", "rdp": True}


@pytest.mark.parametrize(("apps", "field"), [
    ([{"name": "Notepad", "program": "C:\\Windows\\notepad.exe\r\nfull address:s:evil"}], "program"),
    ([{"name": "Notepad", "program": "notepad.exe"}], "program"),  # not a path nor an alias
    ([{"name": "Notepad", "program": "C:\\a\"b.exe"}], "program"),
    ([{"name": "Note/pad", "program": "||notepad"}], "name"),
    ([{"name": "x" * 61, "program": "||notepad"}], "name"),
    ([{"name": "Notepad", "program": "||notepad", "icon": "javascript:alert(1)"}], "icon"),
    ([{"name": "Notepad", "program": "||notepad"}, {"name": "notepad", "program": "||n2"}], None),
])
def test_the_image_api_refuses_bad_apps_with_a_400_naming_the_field(schools, client, apps, field):
    client.force_login(schools["head1"])
    answer = client.post("/clc/api/1.0/images/", API_IMAGE | {"apps": apps}, content_type="application/json")
    assert answer.status_code == 400, answer.content
    errors = answer.json()["apps"]  # messages, each naming the app's place in the list and its field
    if field is None:
        assert errors == ["each app's name once: Notepad, notepad more than once"]
    else:
        assert errors and all(error.startswith(f"app 1, {field}: ") for error in errors), errors
    assert not Image.objects.filter(name="Windows 10 lab").exists()


def test_the_image_api_takes_rdp_and_apps_and_a_change_of_apps_replaces_them(schools, client):
    client.force_login(schools["head1"])
    made = client.post("/clc/api/1.0/images/", API_IMAGE | {"apps": [
        {"name": " Notepad ", "program": "||notepad"}, {"name": "Writer", "program": WRITER}]},
        content_type="application/json")
    assert made.status_code == 201, made.content
    image = made.json()
    assert image["rdp"] is True and image["apps"] == [{"name": "Notepad", "program": "||notepad", "icon": ""},
                                                      {"name": "Writer", "program": WRITER, "icon": ""}]
    path = f"/clc/api/1.0/images/{image['image_id']}/"
    kept = client.patch(path, {"description": "lab"}, content_type="application/json").json()
    assert [app["name"] for app in kept["apps"]] == ["Notepad", "Writer"]
    changed = client.patch(path, {"apps": [{"name": "Paint", "program": "/usr/bin/pinta"}], "rdp": False},
                           content_type="application/json").json()
    assert (changed["rdp"], [app["name"] for app in changed["apps"]]) == (False, ["Paint"])


def test_the_consoles_image_form_saves_rdp_and_apps_and_shows_a_bad_program_as_its_error(schools, client):
    image = schools["images"]["edu.s1"]
    client.force_login(schools["head1"])
    form = {"name": image.name, "os_type": "windows", "arch": 64, "usage": "desktop",
            "owner_group": schools["s1"].pk, "description": "", "rdp": "on", "apps-TOTAL_FORMS": "1",
            "apps-INITIAL_FORMS": "0", "apps-MIN_NUM_FORMS": "0", "apps-MAX_NUM_FORMS": "50"}
    bad = client.post(f"/clc/images/{image.image_id}/edit/", form | {"apps-0-name": "Writer",
                                                                     "apps-0-program": "swriter"})
    assert bad.status_code == 200 and "must be a RemoteApp alias" in bad.content.decode()
    twice = client.post(f"/clc/images/{image.image_id}/edit/", form | {
        "apps-TOTAL_FORMS": "2", "apps-0-name": "Writer", "apps-0-program": WRITER, "apps-1-name": "writer",
        "apps-1-program": "||swriter"})
    assert twice.status_code == 200 and "each app&#x27;s name once: Writer, writer" in twice.content.decode()
    assert not ImageApp.objects.exists() and not Image.objects.get(pk=image.pk).rdp
    saved = client.post(f"/clc/images/{image.image_id}/edit/", form | {"apps-0-name": "Writer",
                                                                       "apps-0-program": WRITER})
    assert saved.status_code == 302
    assert Image.objects.get(pk=image.pk).rdp and list(ImageApp.objects.values_list("name", "program")) == [
        ("Writer", WRITER)]
    detail = client.get(f"/clc/images/{image.image_id}/").content.decode()
    assert "Writer" in detail and "serve RDP on 3389" in detail
    created = client.post("/clc/images/new/", form | {"name": "New lab", "apps-0-name": "Notepad",
                                                      "apps-0-program": "||notepad"})
    assert created.status_code == 302, created.content.decode()[-2000:]
    assert list(Image.objects.get(name="New lab").apps.values_list("name", flat=True)) == ["Notepad"]
