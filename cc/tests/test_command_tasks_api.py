"""``GET /cc/api/1.0/tasks/`` and ``tasks/<task_id>/``: the CLC reads the live state of the commands the CC sent (the
newest first, filtered by node, CLC task and state, a page at a time); a bad filter is a 400 naming it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cc.models import CommandTask

pytestmark = [pytest.mark.database, pytest.mark.django_db]

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


@pytest.fixture
def commands() -> list[CommandTask]:
    made = []
    for n in range(30):  # a class's desktops: one run each on two nodes
        made.append(CommandTask.objects.create(
            task_id=f"{n:032x}", node=f"nc-{n % 2 + 1}", op="instance/run", tid=f"tsk-{n}",
            state="done" if n < 20 else "progress", progress=100 if n < 20 else 40, worker=f"nc@nc-{n % 2 + 1}",
            queued_at=NOW + timedelta(seconds=n)))
    return made


def test_the_newest_commands_come_first_a_page_at_a_time(signed_client, commands):
    answer = signed_client.get("/cc/api/1.0/tasks/?limit=5").json()
    assert answer["count"] == 30
    assert [task["task_id"] for task in answer["results"]] == [f"{n:032x}" for n in (29, 28, 27, 26, 25)]


def test_commands_are_filtered_by_node_task_and_state(signed_client, commands):
    running = signed_client.get("/cc/api/1.0/tasks/?node=nc-1&state=progress").json()
    assert running["count"] == 5 and {task["node"] for task in running["results"]} == {"nc-1"}
    one = signed_client.get("/cc/api/1.0/tasks/?tid=tsk-7").json()
    assert [(task["op"], task["state"], task["worker"]) for task in one["results"]] == [
        ("instance/run", "done", "nc@nc-2")]


def test_one_command_by_its_task_id(signed_client, commands):
    answer = signed_client.get(f"/cc/api/1.0/tasks/{25:032x}/")
    assert answer.status_code == 200
    assert {key: answer.json()[key] for key in ("state", "progress", "tid")} == {
        "state": "progress", "progress": 40, "tid": "tsk-25"}
    assert signed_client.get(f"/cc/api/1.0/tasks/{99:032x}/").status_code == 404


@pytest.mark.parametrize("query, field", [
    ("state=exploded", "state"), ("node=NC_1", "node"), ("limit=0", "limit"), ("limit=501", "limit"),
    ("limit=many", "limit"), ("tid=" + "t" * 129, "tid")])
def test_a_bad_filter_is_a_400_naming_it(signed_client, commands, query, field):
    response = signed_client.get(f"/cc/api/1.0/tasks/?{query}")
    assert response.status_code == 400, response.content[:300]
    assert list(response.json()) == [field]


@pytest.mark.parametrize("task_id", ["a" * 65, "x;rm", "abc-def"])
def test_a_malformed_task_id_is_a_400(signed_client, task_id):
    response = signed_client.get(f"/cc/api/1.0/tasks/{task_id}/")
    assert response.status_code == 400, response.content[:300]
