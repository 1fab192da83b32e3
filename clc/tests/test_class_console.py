"""The teacher's class console: a teacher of the school sees every desktop of a class with its state and who holds
it, starts and stops all of them or a selection, resets them and sends their students a message shown in the
portal; another school's teacher finds no such class (404), a student may not open it (403), and a selection that
names another class's desktop does nothing. Runs are placed by a real cluster controller's API."""

from __future__ import annotations

import html
import re

import pytest

from clc.services import authz, classroom
from clc.services.pools import claim_desktop, create_pool
from clc.tests.classes import as_, report
from luhyadb.models import DesktopPool, Instance

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

PAGE = "/clc/class/edu.s1.c1/"


def class_pool(schools, size: int = 4) -> DesktopPool:
    return create_pool(name="Class 1", image=schools["images"]["edu.s1"], vm_type=schools["tiny"],
                       owner_group=schools["c1"], max_size=size)


def seated(schools, count: int) -> list[Instance]:
    """``count`` students of class c1, each with a desktop of its pool, running."""
    pool = class_pool(schools)
    desktops = []
    for student in schools["students"][:count]:
        desktop = claim_desktop(authz.actor_for(student), pool, student).desktop
        report(desktop, "running")
        desktops.append(desktop)
    return desktops


def act(client, action: str, selected=(), text: str = ""):
    return client.post(f"{PAGE}act/", {"action": action, "selected": list(selected), "text": text}, follow=True)


def shown(page) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.content.decode())).split())


def test_the_teacher_sees_each_desktop_of_the_class_with_its_state_and_who_holds_it(schools):
    desktops = seated(schools, 3)
    page = as_(schools["teacher1"]).get(PAGE)
    assert page.status_code == 200
    text = shown(page)
    for desktop, student in zip(desktops, schools["students"], strict=False):
        assert f'data-insid="{desktop.instance_id}"' in page.content.decode()
        assert student.username in text
    status = as_(schools["teacher1"]).get(f"{PAGE}status/").json()["desktops"]
    assert [(row["holder"], row["state"]) for row in status] == [(s.username, "running")
                                                                 for s in schools["students"][:3]]


def test_stop_all_and_start_all_act_on_every_desktop_of_the_class_and_say_what_they_did(schools):
    desktops = seated(schools, 3)
    teacher = as_(schools["teacher1"])
    assert "Stop: 3 desktops" in shown(act(teacher, "stop"))
    assert set(Instance.objects.values_list("state", flat=True)) == {"stopping"}
    for desktop in desktops:
        report(desktop, "stopped")
    assert "Start: 3 desktops" in shown(act(teacher, "start"))
    assert set(Instance.objects.values_list("state", flat=True)) == {"scheduled"}


def test_stop_and_reset_ask_before_they_lose_the_students_work_and_start_and_message_do_not(schools):
    seated(schools, 1)
    body = as_(schools["teacher1"]).get(PAGE).content.decode()
    buttons = {action: re.search(rf'<button type="submit" name="action" value="{action}"[^>]*>', body).group(0)
               for action in classroom.ACTIONS}
    for action in ("stop", "reset"):
        question = html.unescape(re.search(r'data-confirm="([^"]+)"', buttons[action]).group(1))
        assert "{which}" in question and "lost" in question, question
    for action in ("start", "message"):
        assert "data-confirm" not in buttons[action], buttons[action]


def test_the_watch_page_shows_the_screen_in_the_box_the_students_console_page_shows_it_in(schools):
    desktop = seated(schools, 1)[0]
    page = as_(schools["teacher1"]).get(f"{PAGE}watch/{desktop.instance_id}/")
    assert page.status_code == 200
    body = page.content.decode()
    # noVNC scales the screen to its box: outside the portal's (75 % of the window's height) it has none.
    assert 'href="/static/clc/portal.css"' in body
    assert re.search(r'<div class="portal">.*<div class="actions">', body, re.DOTALL), body


def test_an_action_on_a_selection_leaves_the_other_desktops_alone(schools):
    first, second, third = seated(schools, 3)
    answer = shown(act(as_(schools["teacher1"]), "stop", [first.instance_id, third.instance_id]))
    assert "Stop: 2 desktops" in answer
    states = dict(Instance.objects.values_list("instance_id", "state"))
    assert (states[first.instance_id], states[second.instance_id], states[third.instance_id]) == (
        "stopping", "running", "stopping")


def test_reset_gives_a_pools_desktop_back_to_the_pool_once_it_has_stopped(schools):
    desktop, = seated(schools, 1)
    assert "Reset: 1 desktop" in shown(act(as_(schools["teacher1"]), "reset"))
    report(desktop, "stopped")
    desktop.refresh_from_db()
    assert (desktop.state, desktop.assigned_to) == ("stopped", None)


def test_a_message_reaches_the_portal_of_each_student_holding_a_desktop(schools):
    seated(schools, 2)
    assert "Message: 2 desktops" in shown(act(as_(schools["teacher1"]), "message", text="Save your work, please"))
    student, other = schools["students"][0], schools["students"][2]
    assert "teacher1: Save your work, please" in shown(as_(student).get("/portal/"))
    status = as_(student).get("/portal/status/").json()["desktops"]
    assert status[0]["notice"] == "teacher1: Save your work, please"
    assert "Save your work" not in as_(other).get("/portal/").content.decode()


@pytest.mark.parametrize("action, text, said", [
    ("message", "", "Nothing done: a message of 1 to 500 characters"),
    ("message", "x" * 501, "Nothing done: a message of 1 to 500 characters"),
    ("reboot", "", "Nothing done: unknown action 'reboot'; one of start, stop, reset, message"),
])
def test_a_bad_action_or_message_does_nothing_and_says_why(schools, action, text, said):
    seated(schools, 1)
    assert said in shown(act(as_(schools["teacher1"]), action, text=text))
    assert Instance.objects.get().state == "running"


def test_a_selection_naming_another_classs_desktop_does_nothing(schools):
    mine, = seated(schools, 1)
    other_pool = create_pool(name="Class 2", image=schools["images"]["edu.s1"], vm_type=schools["tiny"],
                             owner_group=schools["c2"], max_size=1)
    stranger = Instance.objects.create(instance_id="ins-0000ffff", name="other", kind="rvd", image=other_pool.image,
                                       vm_type=schools["tiny"], owner_group=schools["c2"], pool=other_pool,
                                       state="running", mac="52:54:00:00:ff:ff")
    answer = shown(act(as_(schools["teacher1"]), "stop", [mine.instance_id, stranger.instance_id]))
    assert "Nothing done: not desktops of class edu.s1.c1: ins-0000ffff" in answer
    assert set(Instance.objects.values_list("state", flat=True)) == {"running"}


def test_another_schools_teacher_finds_no_class_and_a_student_may_not_open_it(schools):
    desktop, = seated(schools, 1)
    other = as_(schools["teacher2"])
    for path in (PAGE, f"{PAGE}status/", f"{PAGE}screens/{desktop.instance_id}.png"):
        assert other.get(path).status_code == 404, path
    assert other.post(f"{PAGE}act/", {"action": "stop"}).status_code == 404
    student = as_(schools["students"][0])
    assert student.get(PAGE).status_code == 403
    assert student.post(f"{PAGE}act/", {"action": "stop"}).status_code == 403
    assert Instance.objects.get().state == "running"
    assert as_(schools["teacher1"]).get("/clc/class/edu.nowhere/").status_code == 404


def test_a_desktop_without_a_vnc_console_has_no_screen_to_show(schools):
    desktop, = seated(schools, 1)
    answer = as_(schools["teacher1"]).get(f"{PAGE}screens/{desktop.instance_id}.png")
    # The test's CC placed it with a console on a node that runs nothing here: no picture, and a reason.
    assert answer.status_code == 204
    assert "gave no picture" in answer["X-Reason"] or "no VNC console" in answer["X-Reason"]


def test_the_class_desktops_are_the_groups_remote_desktops_only(schools):
    seated(schools, 1)
    assert [d.instance_id for d in classroom.class_desktops(authz.actor_for(schools["teacher1"]), schools["c2"])] == []


def test_a_teacher_finds_the_classes_of_their_school_with_desktops_and_no_other_schools(schools):
    seated(schools, 2)
    page = shown(as_(schools["teacher1"]).get("/clc/class/"))
    assert "edu.s1.c1 2" in page and "Classes" in page
    assert "edu.s1.c1" not in as_(schools["teacher2"]).get("/clc/class/").content.decode()
