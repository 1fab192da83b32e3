"""The console's pages of desktop pools and their timetables: a school's administrator makes a pool on its form and
finds it listed, a bad setting or lesson is named on its field and nothing is saved, a lesson added on the pool's page
shows in its timetable and its delete removes it, another school's administrator finds none of the pages, and a pool
whose desktop runs is not deleted (the refusal is a message, never an error page)."""

from __future__ import annotations

import html
import re
from datetime import time

import pytest

from clc.services.lessons import create_lesson
from clc.services.pools import create_pool
from clc.tests.classes import as_, school_records
from luhyadb.models import DesktopPool, Instance, Lesson

pytestmark = [pytest.mark.database, pytest.mark.django_db]


@pytest.fixture
def school():
    """Two schools (``clc.tests.classes.school_records``), their heads logged in."""
    records = school_records()
    return records | {"head1": as_(records["head1"]), "head2": as_(records["head2"])}


def form_data(school, **changes) -> dict:
    return {"name": "Class 1 desktops", "owner_group": school["c1"].pk, "image": school["images"]["edu.s1"].pk,
            "image_version": 0, "vm_type": school["tiny"].pk, "min_ready": 2, "max_size": 25} | changes


def pool_of(school) -> DesktopPool:
    return create_pool(name="Class 1 desktops", image=school["images"]["edu.s1"], vm_type=school["tiny"],
                       owner_group=school["c1"], max_size=25)


def errors_of(page: str, field: str) -> list[str]:
    """The errors shown on one field of a form (its row, up to the next row or the form's end)."""
    row = re.search(rf'id="row-{field}"(.*?)(?=id="row-|</form>)', page, re.S)
    assert row, f"no row for {field}"
    return [html.unescape(text) for text in re.findall(r'<span class="error"[^>]*>(.*?)</span>', row[1], re.S)]


def test_a_school_administrator_makes_a_pool_through_the_form_and_sees_it_listed(school):
    head = school["head1"]
    listing = head.get("/clc/pools/").content.decode()
    assert '<a href="/clc/pools/">Desktop pools</a>' in listing  # the navigation's link
    assert 'href="/clc/pools/new/"' in listing
    form = head.get("/clc/pools/new/").content.decode()
    assert "edu.s2" not in form  # only owner-groups and images in the administrator's authority are offered
    response = head.post("/clc/pools/new/", form_data(school))
    pool = DesktopPool.objects.get()
    assert (response.status_code, response["Location"]) == (302, f"/clc/pools/{pool.pool_id}/")
    assert (pool.name, pool.owner_group, pool.image, pool.min_ready, pool.max_size, pool.persistent) == (
        "Class 1 desktops", school["c1"], school["images"]["edu.s1"], 2, 25, False)
    row = re.search(rf"<tr><td><a href=\"/clc/pools/{pool.pool_id}/\">(.*?)</tr>", head.get("/clc/pools/")
                    .content.decode(), re.S)[1]
    cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", "<td>" + row, re.S)]
    assert cells == ["Class 1 desktops", pool.pool_id, "edu.s1.c1", "edu.s1 desktop (current)", "tiny", "2 / 25",
                     "no", "0 / 0"]


@pytest.mark.parametrize("changes, field, words", [
    ({"min_ready": 5, "max_size": 4}, "min_ready", "min ready (5) must lie between 0 and the pool's size (4)"),
    # Class 2's image, which the school's administrator may read: not for class 1's pool.
    ({"image_of": "edu.s1.c2"}, "image", "belongs to edu.s1.c2: a pool of edu.s1.c1 may use the images of its own"),
])
def test_a_bad_pool_form_shows_the_error_on_its_field_and_saves_nothing(school, changes, field, words):
    if "image_of" in changes:
        changes = {"image": school["images"][changes.pop("image_of")].pk}
    response = school["head1"].post("/clc/pools/new/", form_data(school, **changes))
    assert response.status_code == 200
    errors = errors_of(response.content.decode(), field)
    assert len(errors) == 1 and words in errors[0], errors
    assert not DesktopPool.objects.exists()


@pytest.mark.parametrize("lesson, field, words", [
    ({"weekdays": [0, 2], "starts": "08:30", "ends": "09:30"}, "starts", "it overlaps Maths (08:00-09:00 on Monday)"),
    ({"starts": "10:00", "ends": "09:00"}, "ends", "the lesson ends (09:00) before it starts (10:00)"),
    ({"weekdays": []}, "weekdays", "choose at least one weekday"),
])
def test_a_bad_lesson_shows_the_error_on_its_field_and_is_not_added(school, lesson, field, words):
    pool = pool_of(school)
    create_lesson(pool=pool, name="Maths", weekdays=[0], starts=time(8), ends=time(9))
    art = {"name": "Art", "weekdays": [1], "starts": "08:00", "ends": "09:00", "prestart_minutes": 10} | lesson
    response = school["head1"].post(f"/clc/pools/{pool.pool_id}/lessons/", art)
    assert response.status_code == 200
    errors = errors_of(response.content.decode(), field)
    assert len(errors) == 1 and words in errors[0], errors
    assert list(Lesson.objects.values_list("name", flat=True)) == ["Maths"]


def test_a_lesson_added_on_the_pools_page_shows_in_its_timetable_and_its_delete_removes_it(school):
    pool = pool_of(school)
    head = school["head1"]
    lesson = {"name": "Art", "weekdays": [1, 3], "starts": "10:15", "ends": "11:00", "prestart_minutes": 5}
    response = head.post(f"/clc/pools/{pool.pool_id}/lessons/", lesson)
    assert (response.status_code, response["Location"]) == (302, f"/clc/pools/{pool.pool_id}/")
    added = Lesson.objects.get()
    assert (added.weekdays, added.starts, added.ends, added.prestart_minutes) == ([1, 3], time(10, 15), time(11), 5)
    page = html.unescape(head.get(f"/clc/pools/{pool.pool_id}/").content.decode())
    assert "<td>Art</td><td>Tuesday, Thursday</td>" in page and "10:15–11:00" in page and "5 min before" in page
    delete = f"/clc/pools/{pool.pool_id}/lessons/{added.lesson_id}/delete/"
    assert f'action="{delete}"' in page
    assert head.post(delete).status_code == 302
    assert not Lesson.objects.exists()


def test_another_schools_administrator_gets_404_on_every_page_of_the_pool(school):
    pool = pool_of(school)
    lesson = create_lesson(pool=pool, name="Maths", weekdays=[0], starts=time(8), ends=time(9))
    stranger = school["head2"]
    base = f"/clc/pools/{pool.pool_id}/"
    for method, path in (("get", base), ("get", f"{base}edit/"), ("post", f"{base}edit/"), ("get", f"{base}delete/"),
                         ("post", f"{base}delete/"), ("post", f"{base}lessons/"),
                         ("post", f"{base}lessons/{lesson.lesson_id}/delete/")):
        assert getattr(stranger, method)(path).status_code == 404, (method, path)
    assert pool.pool_id not in stranger.get("/clc/pools/").content.decode()
    assert DesktopPool.objects.filter(pk=pool.pk).exists() and Lesson.objects.filter(pk=lesson.pk).exists()


def test_deleting_a_pool_whose_desktop_runs_shows_the_refusal_and_keeps_the_pool(school):
    pool = pool_of(school)
    Instance.objects.create(instance_id="ins-0000abcd", name="Class 1 desktops 1", kind="rvd", pool=pool,
                            image=pool.image, vm_type=pool.vm_type, owner_group=pool.owner_group, state="running",
                            node="nc-1")
    head = school["head1"]
    confirm = head.get(f"/clc/pools/{pool.pool_id}/delete/").content.decode()
    assert f'action="/clc/pools/{pool.pool_id}/delete/"' in confirm and "<dt>Desktops</dt><dd>1</dd>" in confirm
    response = head.post(f"/clc/pools/{pool.pool_id}/delete/", follow=True)
    assert response.redirect_chain == [(f"/clc/pools/{pool.pool_id}/", 302)]
    page = html.unescape(response.content.decode())
    assert ('<p class="flash error">Not deleted: 1 desktop of Class 1 desktops still runs: stop them first (the class '
            "console's stop all)</p>") in page
    assert re.search(r'<tr data-insid="ins-0000abcd">.*?Running.*?free.*?nc-1', page, re.S)
    assert DesktopPool.objects.filter(pk=pool.pk).exists()


def test_the_records_admin_shows_a_pool_with_its_timetable_but_leaves_changes_to_the_console(admin_client, school):
    pool = pool_of(school)
    lesson = create_lesson(pool=pool, name="Maths", weekdays=[0, 2], starts=time(8), ends=time(8, 45))
    page = admin_client.get(f"/admin/luhyadb/desktoppool/{pool.pk}/change/").content.decode()
    assert pool.pool_id in page and lesson.lesson_id in page and "Maths" in page
    assert admin_client.post(f"/admin/luhyadb/desktoppool/{pool.pk}/change/",
                             {"name": "renamed", "min_ready": 99}).status_code == 403
    assert admin_client.get("/admin/luhyadb/lesson/add/").status_code == 403
    assert DesktopPool.objects.get().name == "Class 1 desktops"
