"""``run_cloud --without`` / ``run_daemons --only``: which of a host's daemons run (``daemons.host.chosen``)."""

import threading

import pytest
from django.core.management.base import CommandError

from daemons.host import chosen, daemon_names
from daemons.worker import Worker

STOP = threading.Event()
WORKERS = [Worker(name, lambda stop: None, STOP) for name in ("celery-worker", "nc-vm-watch", "nc-heartbeat")]


def names(workers: list[Worker]) -> list[str]:
    return [worker.name for worker in workers]


def test_a_comma_list_of_names_is_read_without_blanks():
    assert daemon_names(" celery-worker, ,nc-vm-watch ") == {"celery-worker", "nc-vm-watch"}
    assert daemon_names("") == set()


def test_without_names_every_daemon_runs():
    assert names(chosen(WORKERS, set(), set())) == ["celery-worker", "nc-vm-watch", "nc-heartbeat"]


def test_without_leaves_out_the_node_worker_that_a_celery_worker_of_its_own_replaces():
    assert names(chosen(WORKERS, set(), {"celery-worker"})) == ["nc-vm-watch", "nc-heartbeat"]


def test_only_and_without_together():
    assert names(chosen(WORKERS, {"celery-worker", "nc-heartbeat"}, {"celery-worker"})) == ["nc-heartbeat"]


@pytest.mark.parametrize("only, without", [({"nc-comands"}, set()), (set(), {"clc-status"})])
def test_a_name_this_host_has_no_daemon_of_is_refused_with_the_names_it_has(only, without):
    with pytest.raises(CommandError, match="no daemon named .*there are celery-worker, nc-vm-watch, nc-heartbeat"):
        chosen(WORKERS, only, without)
