"""The task list: the page and ``GET tasks/`` show only the tasks the person may read (those of instances and images
in their authority), with phase, state, progress and message, filtered by how they stand and paginated; the page
refreshes itself from the API."""

from __future__ import annotations

import re

import pytest

from luhyadb.models import Image, Instance, TaskTransaction, VMType

pytestmark = [pytest.mark.database, pytest.mark.django_db]
pytest_plugins = ["clc.tests.people_fixtures"]  # the groups and login fixtures

API = "/clc/api/1.0/tasks/"


def instance_in(path: str, number: int, groups) -> Instance:
    image = Image.objects.create(image_id=f"img-{number:08x}", name=f"Image {number}",
                                 owner_group=groups[path], current_version=1)
    return Instance.objects.create(instance_id=f"ins-{number:08x}", name=f"vm {number}", kind="rvd", image=image,
                                   vm_type=VMType.objects.get(name="small"), owner_group=groups[path])


def task_of(instance: Instance, **values) -> TaskTransaction:
    image = instance.image.image_id
    return TaskTransaction.objects.create(tid=f"{image}:{image}:{instance.instance_id}", src_image_id=image,
                                          dst_image_id=image, instance_id=instance.instance_id, **values)


def tids(page: str) -> list[str]:
    return re.findall(r'<tr data-tid="([^"]+)">', page)


@pytest.fixture
def school_tasks(groups):
    """A running, a failed and a done task in edu.school.class1, and one in edu.other."""
    running = task_of(instance_in("edu.school.class1", 1, groups), phase="preparing", state="downloading",
                      progress=42, message="12 of 30 MB")
    failed = task_of(instance_in("edu.school.class1", 2, groups), phase="failed", state="error", failed=True,
                     message="no node fits")
    done = task_of(instance_in("edu.school.class1", 3, groups), phase="preparing", state="running", progress=100,
                   done=True)
    other = task_of(instance_in("edu.other", 4, groups), state="downloading")
    return {"running": running, "failed": failed, "done": done, "other": other}


def test_the_page_lists_the_tasks_in_the_authority_with_phase_state_progress_and_message(client, login,
                                                                                        school_tasks):
    login("teacher", "poweradm", "edu.school")
    page = client.get("/clc/tasks/").content.decode()
    assert sorted(tids(page)) == sorted(school_tasks[name].tid for name in ("running", "failed", "done"))
    row = re.search(rf'<tr data-tid="{school_tasks["running"].tid}">.*?</tr>', page, re.S)[0]
    for text in ("Preparing", "downloading", '<progress max="100" value="42">', "42%", "12 of 30 MB",
                 'class="state task-running"'):
        assert text in row, text
    assert 'class="state task-failed"' in page and "no node fits" in page


def test_the_page_filters_running_failed_and_done(client, login, school_tasks):
    login("teacher", "poweradm", "edu.school")
    for show in ("running", "failed", "done"):
        assert tids(client.get(f"/clc/tasks/?show={show}").content.decode()) == [school_tasks[show].tid], show
    assert len(tids(client.get("/clc/tasks/?show=anything").content.decode())) == 3


def test_the_page_has_pages_of_25_newest_change_first(client, login, groups):
    instance = instance_in("edu.school", 9, groups)
    for number in range(30):
        TaskTransaction.objects.create(tid=f"img-00000009:img-{number:08x}:ins-00000009", src_image_id="img-00000009",
                                       dst_image_id=f"img-{number:08x}", instance_id=instance.instance_id)
    login("teacher", "poweradm", "edu.school")
    first = client.get("/clc/tasks/").content.decode()
    assert len(tids(first)) == 25 and "Page 1 of 2" in first
    assert tids(first)[0] == "img-00000009:img-0000001d:ins-00000009"  # the last one written
    assert len(tids(client.get("/clc/tasks/?page=2").content.decode())) == 5


def test_the_page_refreshes_from_the_api_with_its_filter_and_page(client, login, school_tasks):
    login("teacher", "poweradm", "edu.school")
    page = client.get("/clc/tasks/?show=failed").content.decode()
    source = re.search(r'<table id="tasks" data-source="([^"]+)"', page)[1].replace("&amp;", "&")
    assert source == "/clc/api/1.0/tasks/?limit=25&offset=0&show=failed"
    assert '<script src="/static/clc/tasks.js"></script>' in page
    assert [task["tid"] for task in client.get(source).json()["results"]] == [school_tasks["failed"].tid]
    assert client.get("/static/clc/tasks.js").status_code == 200


def test_the_api_lists_only_readable_tasks_paginated_and_filtered(client, login, school_tasks):
    login("teacher", "poweradm", "edu.school")
    listed = client.get(API).json()
    assert listed["count"] == 3 and school_tasks["other"].tid not in {task["tid"] for task in listed["results"]}
    task = client.get(f"{API}?show=running").json()["results"][0]
    assert {key: task[key] for key in ("phase", "phase_display", "state", "standing", "progress", "message")} == {
        "phase": "preparing", "phase_display": "Preparing", "state": "downloading", "standing": "running",
        "progress": 42, "message": "12 of 30 MB"}
    page = client.get(f"{API}?limit=2&offset=2").json()
    assert (page["count"], len(page["results"])) == (3, 1)
    assert client.get(f"{API}?show=sleeping").json() == {"show": ["show must be one of failed, running, done"]}


def test_the_root_administrator_sees_every_task(admin_client, school_tasks):
    assert admin_client.get(API).json()["count"] == 4
    assert len(tids(admin_client.get("/clc/tasks/").content.decode())) == 4


def test_a_student_reads_no_task(client, login, school_tasks):
    login("pupil", "user", "edu.school.class1")
    assert client.get("/clc/tasks/").status_code == 403
    assert client.get(API).status_code == 403


def test_the_task_of_one_record_stays_where_it_was(client, login, school_tasks):
    login("teacher", "poweradm", "edu.school", is_staff=True)
    answer = client.get(f"/clc/api/1.0/tasks/{school_tasks['running'].tid}/").json()
    assert (answer["tid"], answer["progress"]) == (school_tasks["running"].tid, 42)
