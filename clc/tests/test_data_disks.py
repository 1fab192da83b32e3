"""Personal data disks (issue 16): a pool with ``data_disk_mb`` gives each student their own volume in the cluster,
made by the real SC (this test server's) on their first claim and recorded on their desktop so its run carries it;
one per student and cluster however many claims come at once; released when the desktop goes back to the pool and
taken by the student's next desktop, never deleted by a reset; a desktop running already gets it by an attach; a
cluster without an SC starts the desktop all the same and says why it has no data disk. Runs are placed by this
test server's real CC."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from django.db import close_old_connections

from clc.services.pools import create_pool, keep_pool
from clc.tests.classes import CLASS, as_, report
from luhyaapi.volumes import RUN_VOLUMES
from luhyadb.models import DesktopPool, Instance, Volume
from tests.commands import purge, queued

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

API = "/clc/api/1.0"
MIB = 2**20


def pool_of(schools, **settings) -> DesktopPool:
    values = {"name": "Class 1 desktops", "image": schools["images"]["edu.s1"], "vm_type": schools["tiny"],
              "owner_group": schools["c1"], "min_ready": 0, "max_size": CLASS, "data_disk_mb": 1} | settings
    return create_pool(**values)


def claim(user, pool: DesktopPool) -> dict:
    answer = as_(user).post(f"{API}/pools/{pool.pool_id}/claim/", content_type="application/json")
    assert answer.status_code == 202, answer.content
    return answer.json()


def disk_of(user) -> Volume:
    return Volume.objects.select_related("instance").get(personal=True, holder=user)


def test_a_students_first_claim_makes_their_data_disk_and_the_run_carries_it(schools, exporting):
    student = schools["students"][0]
    purge("nc-1")
    desktop = claim(student, pool_of(schools, data_disk_mb=4))
    disk = disk_of(student)
    assert (disk.name, disk.size_bytes, disk.cluster, disk.sc, disk.owner_group.path) == (
        f"Data disk of {student.username}", 4 * MIB, "cluster1", "sc-1", "edu.s1.c1")
    assert (disk.state, disk.instance.instance_id) == ("in-use", desktop["instance_id"])
    assert (exporting / f"{disk.volume_id}.raw").stat().st_size == 4 * MIB
    [command] = queued("nc-1")
    assert command.op == "instance/run"
    assert [target["volume_id"] for target in command.paras[RUN_VOLUMES]] == [disk.volume_id]


def test_thirty_students_claiming_at_once_get_thirty_data_disks_one_each(settings, schools, store):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, sc_capacity_bytes=4 * CLASS * MIB)
    pool = pool_of(schools)

    def claimed(student) -> int:
        try:
            return as_(student).post(f"{API}/pools/{pool.pool_id}/claim/").status_code
        finally:
            close_old_connections()

    with ThreadPoolExecutor(10) as threads:
        assert set(threads.map(claimed, schools["students"])) == {202}
    disks = Volume.objects.filter(personal=True).select_related("instance", "holder")
    assert sorted(disk.holder.username for disk in disks) == sorted(s.username for s in schools["students"])
    assert all(disk.instance.assigned_to_id == disk.holder_id for disk in disks), "each on its student's desktop"
    assert len(list(store.glob("vol-*.raw"))) == CLASS


def test_one_student_claiming_many_times_at_once_gets_one_data_disk(schools, store):
    pool, student = pool_of(schools), schools["students"][0]

    def claimed(_) -> int:
        try:
            return as_(student).post(f"{API}/pools/{pool.pool_id}/claim/").status_code
        finally:
            close_old_connections()

    with ThreadPoolExecutor(5) as threads:
        assert set(threads.map(claimed, range(5))) == {202}
    assert Volume.objects.filter(personal=True).count() == 1
    assert [path.stem for path in store.glob("vol-*.raw")] == [disk_of(student).volume_id], \
        "a disk made by a claim that lost the race is deleted again"


def test_the_disk_is_released_when_the_desktop_goes_back_and_kept_for_the_students_next_desktop(schools, store):
    pool = pool_of(schools, max_size=2)
    first, second = schools["students"][:2]
    desktop = Instance.objects.get(instance_id=claim(first, pool)["instance_id"])
    disk = disk_of(first)
    report(desktop, "running")
    report(desktop, "stopping")
    report(desktop, "stopped")  # back in the pool: its disk is made again from the image at its next run
    disk.refresh_from_db()
    assert (disk.state, disk.instance) == ("available", None)
    # The next student gets that desktop, and a data disk of their own, not the first's.
    again = claim(second, pool)
    assert again["instance_id"] == desktop.instance_id
    assert disk_of(second).volume_id != disk.volume_id
    assert disk_of(second).instance.instance_id == desktop.instance_id
    # The first student's next desktop takes their disk again, the same volume with its file.
    mine = claim(first, pool)
    assert (disk_of(first).volume_id, disk_of(first).instance.instance_id) == (disk.volume_id, mine["instance_id"])
    assert (store / f"{disk.volume_id}.raw").exists()
    assert Volume.objects.filter(personal=True).count() == 2


def test_a_desktop_running_already_gets_the_disk_by_an_attach(schools, exporting):
    pool = pool_of(schools, min_ready=1)
    [ready] = keep_pool(pool)
    desktop = Instance.objects.get(instance_id=ready)
    report(desktop, "booting")
    report(desktop, "running")
    purge("nc-1")
    student = schools["students"][0]
    assert claim(student, pool)["instance_id"] == ready
    disk = disk_of(student)
    assert (disk.state, disk.instance.instance_id) == ("attaching", ready)
    assert [command.op for command in queued("nc-1") if command.op.startswith("volume/")] == ["volume/attach"]


def test_without_a_storage_controller_the_desktop_starts_and_says_why_it_has_no_data_disk(schools):
    student = schools["students"][0]
    desktop = claim(student, pool_of(schools))
    assert desktop["state"] == "scheduled"
    assert "the data disk could not be made: no storage controller is online" in desktop["message"]
    assert not Volume.objects.exists()


@pytest.mark.parametrize("value", [-1, 2**20 + 1, "lots"])
def test_a_pools_data_disk_setting_is_checked(schools, value):
    answer = as_(schools["head1"]).post(f"{API}/pools/", {
        "name": "P", "image": schools["images"]["edu.s1"].image_id, "vm_type": "tiny", "owner_group": "edu.s1.c1",
        "data_disk_mb": value}, content_type="application/json")
    assert answer.status_code == 400 and "data_disk_mb" in answer.json(), answer.content


def test_a_pools_data_disk_is_set_through_the_api_and_shown_on_its_page(schools):
    head = as_(schools["head1"])
    answer = head.post(f"{API}/pools/", {"name": "P", "image": schools["images"]["edu.s1"].image_id,
                                         "vm_type": "tiny", "owner_group": "edu.s1.c1", "data_disk_mb": 512},
                       content_type="application/json")
    assert answer.status_code == 201 and answer.json()["data_disk_mb"] == 512, answer.content
    page = head.get(f"/clc/pools/{answer.json()['pool_id']}/").content.decode()
    assert "512 MiB for each person" in page


def test_the_pool_form_sets_the_data_disk_and_refuses_a_negative_one(schools):
    head = as_(schools["head1"])
    data = {"name": "Class 1 desktops", "owner_group": schools["c1"].pk, "image": schools["images"]["edu.s1"].pk,
            "image_version": 0, "vm_type": schools["tiny"].pk, "min_ready": 0, "max_size": 5}
    assert 'name="data_disk_mb"' in head.get("/clc/pools/new/").content.decode()
    refused = head.post("/clc/pools/new/", data | {"data_disk_mb": -5})
    assert refused.status_code == 200 and not DesktopPool.objects.exists()
    assert head.post("/clc/pools/new/", data | {"data_disk_mb": 256}).status_code == 302
    assert DesktopPool.objects.get().data_disk_mb == 256


def test_a_remote_desktop_of_its_own_brings_its_persons_data_disk_to_each_run(schools, store):
    student, head = schools["students"][0], as_(schools["head1"])
    answer = head.post(f"{API}/instances/", {
        "name": "Own desktop", "kind": "rvd", "image": schools["images"]["edu.s1"].image_id, "vm_type": "tiny",
        "owner_group": "edu.s1.c1", "assigned_to": student.username, "data_disk_mb": 2},
        content_type="application/json")
    assert answer.status_code == 201 and answer.json()["data_disk_mb"] == 2, answer.content
    insid = answer.json()["instance_id"]
    assert head.post(f"{API}/instances/{insid}/run/").status_code == 202
    disk = disk_of(student)
    assert (disk.size_bytes, disk.state, disk.instance.instance_id, disk.owner_group.path) == (
        2 * MIB, "in-use", insid, "edu.s1.c1")
    desktop = Instance.objects.get(instance_id=insid)
    report(desktop, "running")
    report(desktop, "stopping")
    report(desktop, "stopped")
    assert head.post(f"{API}/instances/{insid}/run/").status_code == 202
    assert [disk.volume_id] == list(Volume.objects.values_list("volume_id", flat=True)), "the same disk, not another"
    assert disk_of(student).instance.instance_id == insid


def test_the_portal_shows_a_student_their_data_disk_and_where_it_is_and_no_one_elses(schools, store):
    pool = pool_of(schools, data_disk_mb=8)
    first, second = schools["students"][:2]
    desktop = Instance.objects.get(instance_id=claim(first, pool)["instance_id"])
    page = as_(first).get("/portal/").content.decode()
    disk = disk_of(first)
    assert 'id="data-disks"' in page and disk.volume_id in page and "8.0\xa0MB" in page
    assert f"on <strong>{desktop.name}</strong> now" in page
    report(desktop, "running")
    report(desktop, "stopped")
    page = as_(first).get("/portal/").content.decode()
    assert "it comes with your next desktop" in page
    assert 'id="data-disks"' not in as_(second).get("/portal/").content.decode(), "a student without one"
