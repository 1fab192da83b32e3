"""Desktop pools: a class's students each get a desktop of their own from their pool (a ready one first), a
non-persistent pool's desktop goes back to the pool when it stops, a persistent one stays its student's, a full
pool says so, the timetable starts a pool before its lesson and stops its unused desktops after it, bad settings are
a 400 naming the field, and another school's people never reach a pool. Runs are placed by a real cluster
controller's API (this test server's CC role)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time, timedelta

import pytest
from django.db import close_old_connections
from django.utils import timezone

from clc.services import authz, pools
from clc.services.instances import run_instance
from clc.services.lessons import keep_pools
from clc.services.pools import claim_desktop, create_pool, keep_pool
from clc.tests.classes import CLASS, as_, person, report
from luhyadb.models import DesktopPool, Instance, Lesson

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

API = "/clc/api/1.0"


def pool_of(schools, **settings) -> DesktopPool:
    values = {"name": "Class 1 desktops", "image": schools["images"]["edu.s1"], "vm_type": schools["tiny"],
              "owner_group": schools["c1"], "min_ready": 0, "max_size": CLASS} | settings
    return create_pool(**values)


def claim(user, pool: DesktopPool):
    return as_(user).post(f"{API}/pools/{pool.pool_id}/claim/", content_type="application/json")


def test_each_student_of_the_class_gets_a_desktop_of_their_own_and_the_same_one_when_asking_again(schools):
    pool = pool_of(schools)
    students = schools["students"][:6]
    answers = [claim(student, pool) for student in students]
    assert [answer.status_code for answer in answers] == [202] * 6
    desktops = [answer.json() for answer in answers]
    assert len({desktop["instance_id"] for desktop in desktops}) == 6
    assert [desktop["assigned_to"] for desktop in desktops] == [student.username for student in students]
    assert {(desktop["state"], desktop["node"]) for desktop in desktops} == {("scheduled", "nc-1")}
    again = claim(students[0], pool).json()
    assert (again["instance_id"], again["runs"]) == (desktops[0]["instance_id"], 1)
    # The student's desktop is one of "their desktops" everywhere: the portal lists it, another student's is a 404.
    assert desktops[0]["instance_id"] in as_(students[0]).get("/portal/").content.decode()
    assert as_(students[1]).get(f"/portal/desktops/{desktops[0]['instance_id']}/").status_code == 404


def test_a_class_of_thirty_claiming_at_once_gets_thirty_different_desktops(schools):
    pool = pool_of(schools)

    def claimed(student) -> tuple[int, str]:
        try:
            answer = claim(student, pool)
            return answer.status_code, answer.json().get("instance_id", answer.content.decode())
        finally:
            close_old_connections()

    with ThreadPoolExecutor(10) as threads:
        answers = list(threads.map(claimed, schools["students"]))
    assert {status for status, _ in answers} == {202}, answers
    assert len({insid for _, insid in answers}) == CLASS
    holders = Instance.objects.filter(pool=pool).values_list("assigned_to__username", flat=True)
    assert sorted(holders) == sorted(student.username for student in schools["students"])


def test_a_class_claiming_at_once_from_a_pool_that_keeps_desktops_ready_stays_within_its_size(schools):
    # Each claim's round of the pool (keep_pool) adds desktops too: it decides under the claims' lock, so the pool
    # never grows past its size nor numbers two desktops alike (before: 32 desktops "Class 1 desktops 7" twice...).
    pool = pool_of(schools, min_ready=3)

    def claimed(student) -> int:
        try:
            return claim(student, pool).status_code
        finally:
            close_old_connections()

    with ThreadPoolExecutor(10) as threads:
        assert set(threads.map(claimed, schools["students"])) == {202}
    names = list(Instance.objects.filter(pool=pool).values_list("name", flat=True))
    assert len(names) == CLASS and len(set(names)) == CLASS, sorted(names)
    assert Instance.objects.filter(pool=pool, assigned_to__isnull=False).count() == CLASS


def test_a_claimed_desktop_that_the_pools_round_started_meanwhile_is_the_students_without_an_error(schools,
                                                                                                     monkeypatch):
    pool = pool_of(schools, max_size=1)
    first, second = schools["students"][:2]
    desktop = Instance.objects.get(instance_id=claim(first, pool).json()["instance_id"])
    report(desktop, "stopped")  # back in the pool, free and stopped

    def started_by_the_round_first(instance, *args, **kwargs):
        # The pool's round chose this free desktop before the claim took it, and starts it first.
        monkeypatch.setattr(pools, "run_instance", run_instance)
        run_instance(instance)
        return run_instance(instance, *args, **kwargs)  # 409: it is scheduled already

    monkeypatch.setattr(pools, "run_instance", started_by_the_round_first)
    answer = claim(second, pool)
    assert answer.status_code == 202, answer.content
    assert (answer.json()["instance_id"], answer.json()["assigned_to"], answer.json()["state"]) == (
        desktop.instance_id, "s02", "scheduled")


def test_the_pools_round_starts_the_next_desktop_when_a_claim_started_the_one_it_chose(schools, monkeypatch):
    pool = pool_of(schools, max_size=2, min_ready=2)
    assert len(keep_pool(pool)) == 2
    for desktop in Instance.objects.filter(pool=pool):
        report(desktop, "stopped")
    student = schools["students"][0]
    first, second = Instance.objects.filter(pool=pool).order_by("name")

    def claimed_and_started_first(instance, *args, **kwargs):
        # A student's claim takes the round's first choice and starts it before the round does.
        monkeypatch.setattr(pools, "run_instance", run_instance)
        Instance.objects.filter(pk=instance.pk).update(assigned_to=student)
        run_instance(instance)
        return run_instance(instance, *args, **kwargs)  # 409: it is scheduled already

    monkeypatch.setattr(pools, "run_instance", claimed_and_started_first)
    assert keep_pool(pool) == [second.instance_id]
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, first.assigned_to, second.state, second.assigned_to) == (
        "scheduled", student, "scheduled", None)


def test_the_pool_keeps_its_ready_desktops_up_and_hands_out_a_running_one_first(schools):
    pool = pool_of(schools, min_ready=2)
    started = keep_pool(pool)
    assert len(started) == 2
    for insid in started:
        report(Instance.objects.get(instance_id=insid), "running")
    desktop = claim(schools["students"][0], pool).json()
    assert (desktop["instance_id"] in started, desktop["state"], desktop["runs"]) == (True, "running", 1)
    # The pool started another so that two are ready again for the next students.
    free = Instance.objects.filter(pool=pool, assigned_to__isnull=True)
    assert free.count() == 2 and set(free.values_list("state", flat=True)) <= {"running", "scheduled"}
    assert keep_pool(pool) == []


def test_a_stopped_desktop_goes_back_to_the_pool_and_runs_again_from_the_image_for_the_next_student(schools):
    pool = pool_of(schools, max_size=1)
    first, second = schools["students"][:2]
    desktop = Instance.objects.get(instance_id=claim(first, pool).json()["instance_id"])
    assert claim(second, pool).status_code == 409
    report(desktop, "running")
    assert as_(first).post(f"/portal/desktops/{desktop.instance_id}/stop/").status_code == 302
    report(desktop, "stopped")
    desktop.refresh_from_db()
    assert (desktop.assigned_to, desktop.persistent) == (None, False)  # a non-persistent disk is made anew each run
    given = claim(second, pool).json()
    assert (given["instance_id"], given["assigned_to"], given["runs"]) == (desktop.instance_id, "s02", 2)


def test_a_persistent_pools_desktop_stays_its_students_after_it_stops(schools):
    pool = pool_of(schools, persistent=True)
    student = schools["students"][0]
    desktop = Instance.objects.get(instance_id=claim(student, pool).json()["instance_id"])
    assert desktop.persistent
    report(desktop, "stopped")
    desktop.refresh_from_db()
    assert desktop.assigned_to == student
    assert claim(student, pool).json()["instance_id"] == desktop.instance_id


def test_a_full_pool_says_how_big_it_is_and_what_to_do(schools):
    pool = pool_of(schools, max_size=2)
    for student in schools["students"][:2]:
        assert claim(student, pool).status_code == 202
    answer = claim(schools["students"][2], pool)
    assert answer.status_code == 409
    assert answer.json()["detail"].startswith("all 2 desktops of Class 1 desktops are in use")


def test_the_timetable_starts_the_pool_before_a_lesson_and_stops_unused_desktops_after_it(schools):
    pool = pool_of(schools, max_size=4, min_ready=1)
    monday_8 = datetime(2026, 12, 7, 8, 0, tzinfo=timezone.get_current_timezone())
    Lesson.objects.create(lesson_id="lsn-00000001", name="Maths", pool=pool, weekdays=[0], starts=time(8),
                          ends=time(9), prestart_minutes=10)
    # Well before the lesson the pool keeps its one ready desktop; two minutes before it, all four start.
    assert len(keep_pools(monday_8 - timedelta(hours=1))[pool.pool_id]) == 1
    started = keep_pools(monday_8 - timedelta(minutes=2))[pool.pool_id]
    assert len(started) == 3 and Instance.objects.filter(pool=pool, state="scheduled").count() == 4
    for desktop in Instance.objects.filter(pool=pool):
        report(desktop, "running")
    working, gone_home = schools["students"][:2]
    for student in (working, gone_home):
        claim_desktop(authz.actor_for(student), pool, student)
    # After the bell: the desktop whose console is still open stays, the other student's and the spare ones beyond
    # min ready stop.
    after = monday_8 + timedelta(hours=1, minutes=1)
    Instance.objects.filter(pool=pool, assigned_to=working).update(last_activity=after - timedelta(seconds=10))
    Instance.objects.filter(pool=pool, assigned_to=gone_home).update(last_activity=after - timedelta(minutes=20))
    changes = keep_pools(after)[pool.pool_id]
    stopped = {change[1:] for change in changes if change.startswith("-")}
    assert len(stopped) == 2
    assert Instance.objects.get(assigned_to=gone_home).instance_id in stopped
    assert Instance.objects.get(assigned_to=working).state == "running"
    assert Instance.objects.filter(pool=pool, assigned_to__isnull=True, state="running").count() == 1


@pytest.mark.parametrize("changes, field, words", [
    ({"min_ready": 5, "max_size": 4}, "min_ready", "must lie between 0 and the pool's size (4)"),
    # Class 2's image, which the school's head may read: not for class 1 (a school's image serves all its classes).
    ({"image": "img-00000003"}, "image", "belongs to edu.s1.c2: a pool of edu.s1.c1 may use the images of its own"),
    ({"image_version": 7}, "image_version", "has no version 7 (it has: 1)"),
    ({"max_size": 0}, "max_size", "greater than or equal to 1"),
    ({"name": "../etc"}, "name", ""),
])
def test_bad_pool_settings_are_a_400_naming_the_field(schools, changes, field, words):
    body = {"name": "Class 1", "image": "img-00000001", "vm_type": "tiny", "owner_group": "edu.s1.c1"} | changes
    answer = as_(schools["head1"]).post(f"{API}/pools/", body, content_type="application/json")
    assert answer.status_code == 400, answer.content
    assert words in answer.json()[field][0]
    assert not DesktopPool.objects.exists()


@pytest.mark.parametrize("lesson, field, words", [
    ({"starts": "08:30", "ends": "09:30", "weekdays": [0, 2]}, "starts", "overlaps Maths (08:00-09:00 on Monday)"),
    ({"starts": "10:00", "ends": "09:00"}, "ends", "the lesson ends (09:00) before it starts (10:00)"),
    ({"weekdays": [7]}, "weekdays", "a list of distinct weekdays, 0 = Monday ... 6 = Sunday"),
    ({"weekdays": [1, 1]}, "weekdays", "distinct weekdays"),
    ({"weekdays": []}, "weekdays", ""),
])
def test_bad_lessons_are_a_400_naming_the_field(schools, lesson, field, words):
    pool = pool_of(schools)
    head = as_(schools["head1"])
    maths = {"name": "Maths", "pool": pool.pool_id, "weekdays": [0], "starts": "08:00", "ends": "09:00"}
    assert head.post(f"{API}/lessons/", maths, content_type="application/json").status_code == 201
    answer = head.post(f"{API}/lessons/", maths | {"name": "Art"} | lesson, content_type="application/json")
    assert answer.status_code == 400, answer.content
    assert words in str(answer.json()[field])
    assert Lesson.objects.count() == 1


def test_another_schools_administrator_and_another_class_never_reach_the_pool(schools):
    pool = pool_of(schools)
    other_class = person("stranger", schools["c2"])
    assert claim(other_class, pool).status_code == 404
    head2 = as_(schools["head2"])
    for method, path in (("get", f"{API}/pools/{pool.pool_id}/"), ("get", f"{API}/pools/{pool.pool_id}/desktops/"),
                         ("post", f"{API}/pools/{pool.pool_id}/claim/"), ("delete", f"{API}/pools/{pool.pool_id}/")):
        assert getattr(head2, method)(path).status_code == 404, (method, path)
    assert head2.get(f"{API}/pools/").json()["results"] == []
    # A school's administrator may not make a pool of their classes from the other school's image.
    body = {"name": "Sneaky", "image": "img-00000001", "vm_type": "tiny", "owner_group": "edu.s2"}
    assert head2.post(f"{API}/pools/", body, content_type="application/json").status_code == 404
    assert DesktopPool.objects.count() == 1


def test_a_pool_whose_desktops_run_is_not_deleted_and_one_whose_desktops_rest_goes_with_them(schools):
    pool = pool_of(schools)
    head = as_(schools["head1"])
    desktop = Instance.objects.get(instance_id=claim(schools["students"][0], pool).json()["instance_id"])
    answer = head.delete(f"{API}/pools/{pool.pool_id}/")
    assert (answer.status_code, answer.json()["detail"]) == (409, "1 desktop of Class 1 desktops still runs: stop "
                                                                  "them first (the class console's stop all)")
    Instance.objects.filter(pk=desktop.pk).update(state="stopped", node="")
    assert head.delete(f"{API}/pools/{pool.pool_id}/").status_code == 204
    assert not DesktopPool.objects.exists() and not Instance.objects.exists()
