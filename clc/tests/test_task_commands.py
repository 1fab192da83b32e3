"""A task's page in the console shows what the nodes do for it: each command its cluster's CC sent, with the live
state Celery reports (state and phase, progress, the worker, retries, the reason of a failure), asked of the CC;
and says plainly when there is no CC to ask."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cc.models import CommandTask
from clc.tests.test_server_admin import clc_instance
from luhyadb.models import TaskTransaction

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

TID = "img-0000aaaa:img-0000aaaa:ins-0000000a"


@pytest.fixture
def task() -> TaskTransaction:
    return TaskTransaction.objects.create(tid=TID, src_image_id="img-0000aaaa", dst_image_id="img-0000aaaa",
                                          instance_id="ins-0000000a", phase="preparing", state="downloading",
                                          progress=40)


def command(n: int, **fields) -> CommandTask:
    return CommandTask.objects.create(**({"task_id": f"{n:032x}", "node": "nc-1", "tid": TID,
                                          "queued_at": datetime(2026, 12, 6, 8, n, tzinfo=UTC)} | fields))


def test_a_tasks_page_shows_each_command_with_the_state_its_worker_reports(staff, controller, task):
    clc_instance("ins-0000000a", "nc-1", "scheduled")
    command(1, op="image/prepare", state="progress", phase="preparing", progress=40, worker="nc@nc-1")
    command(2, op="instance/stop", state="failed", worker="nc@nc-1",
            reason="RefusedCommand('sealed by cc-9, which may not command nc-1')")
    command(3, op="instance/run", tid="another-task", state="done")

    page = staff.get(f"/clc/tasks/{TID}/").content.decode()
    assert "image/prepare" in page and "nc@nc-1" in page and 'value="40"' in page
    assert "sealed by cc-9, which may not command nc-1" in page
    assert "instance/run" not in page, "another task's command"
    assert page.index("instance/stop") < page.index("image/prepare"), "the newest command first"


def test_the_task_list_links_each_task_to_its_page(staff, task):
    page = staff.get("/clc/tasks/").content.decode()
    assert f'href="/clc/tasks/{TID}/"' in page


def test_a_task_whose_cluster_has_no_controller_online_says_so(staff, task):
    clc_instance("ins-0000000a", "nc-1", "scheduled")
    page = staff.get(f"/clc/tasks/{TID}/").content.decode()
    assert "has no online cluster controller" in page


def test_a_task_of_an_instance_placed_nowhere_says_no_node_has_a_command_of_it(staff, task):
    page = staff.get(f"/clc/tasks/{TID}/").content.decode()
    assert "not placed in a cluster" in page


def test_an_unknown_task_is_a_404(staff):
    assert staff.get("/clc/tasks/img-0000aaaa:img-0000aaaa:ins-000000ff/").status_code == 404


def test_the_workers_page_asks_each_clusters_controller_and_says_which_workers_do_not_answer(staff, controller):
    """Through the real CC and Celery's inspection of the host's broker: nc-1 is registered, its worker does not run.
    A worker that answers is shown online by tests/e2e/test_cloud_processes.py (hosts as processes, RabbitMQ)."""
    from cc.models import ClusterNode
    from luhyadb.models import Server

    ClusterNode.objects.create(name="nc-1", role="nc", ip="10.0.9.11")
    Server.objects.create(role="nc", name="nc-1", ip="10.0.9.11", cluster="cluster1")
    Server.objects.create(role="nc", name="nc-9", ip="10.0.9.19", cluster="cluster9")
    page = staff.get("/clc/workers/").content.decode()
    row = page[page.index('<tr data-worker="nc@nc-1">'):]
    assert 'class="state offline">not answering' in row[:row.index("</tr>")]
    assert "(asked cc-1)" in page
    assert "cluster &#x27;cluster9&#x27; has no online cluster controller to ask for its workers" in page
