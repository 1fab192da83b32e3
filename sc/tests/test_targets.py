"""The volumes' iSCSI export through a real tgtd and QEMU's iSCSI initiator (``qemu-io``, libiscsi from
qemu-block-extra): a node reads and writes its volume with its CHAP account, a wrong secret and another node's
initiator are refused, a tgtd killed with SIGKILL is brought back with every export by the reconcile (the LUN reads
the same bytes), snapshots of an attached volume are taken with tgtd paused and restore through iSCSI.

Not marked ``database``: what these prove is tgt's and QEMU's behaviour, the records are those ``test_store``
proves on both databases; they run once, in the first layer."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from luhyaapi.volumes import VolumeTarget, initiator_iqn
from sc.constants import MiB
from sc.models import Export
from sc.services.snapshots import create_snapshot, restore_volume
from sc.services.store import VolumeError, create_volume, delete_volume, snapshot_path, volume_path
from sc.services.targets import Reconciled, export_volume, parse_targets, reconcile, unexport_volume
from sc.tests.conftest import qemu_io, through_iscsi

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("store")]

VOLUME = "vol-0000000a"


def test_a_node_writes_and_reads_its_volume_through_iscsi_with_its_chap_account(tgtd, tmp_path):
    create_volume(size=64 * MiB, volume_id=VOLUME)
    target = export_volume(VOLUME, "nc-1")
    assert (target.iqn, target.lun, target.initiator) == (
        f"iqn.2026-12.org.educloud:{VOLUME}", 1, "iqn.2026-12.org.educloud:node.nc-1")
    through_iscsi(target, tmp_path, "write -P 0xab 1M 1M", "read -P 0xab 1M 1M")
    with open(volume_path(VOLUME), "rb") as file:
        file.seek(MiB)
        assert file.read(MiB) == b"\xab" * MiB


def test_an_export_is_idempotent_and_another_node_is_refused_while_it_lasts(tgtd):
    create_volume(size=MiB, volume_id=VOLUME)
    first = export_volume(VOLUME, "nc-1")
    assert export_volume(VOLUME, "nc-1") == first
    with pytest.raises(VolumeError) as caught:
        export_volume(VOLUME, "nc-2")
    assert (caught.value.status, str(caught.value)) == (409, f"volume {VOLUME} is exported to node nc-1; detach it "
                                                             "first")
    assert list(tgtd.targets()) == [1] and len(tgtd.accounts()) == 1


def test_an_export_taken_over_moves_to_the_new_node_and_the_old_node_is_refused(tgtd, tmp_path):
    create_volume(size=MiB, volume_id=VOLUME)
    old = export_volume(VOLUME, "nc-1")
    moved = export_volume(VOLUME, "nc-2", take_over=True)
    assert moved.initiator == initiator_iqn("nc-2") and moved.chap_secret != old.chap_secret
    assert list(Export.objects.values_list("node", flat=True)) == ["nc-2"] and len(tgtd.accounts()) == 1
    assert "Target not found" in qemu_io(old, tmp_path, "read 0 512").stderr
    through_iscsi(moved, tmp_path, "write -P 0x5a 0 512", "read -P 0x5a 0 512")


def test_a_wrong_chap_secret_is_refused(tgtd, tmp_path):
    create_volume(size=MiB, volume_id=VOLUME)
    target = export_volume(VOLUME, "nc-1")
    result = qemu_io(target, tmp_path, "read 0 512", secret="Wrong" + target.chap_secret[5:])
    assert result.returncode != 0 and "Authentication failure" in result.stderr


def test_another_nodes_initiator_does_not_find_the_target(tgtd, tmp_path):
    create_volume(size=MiB, volume_id=VOLUME)
    target = export_volume(VOLUME, "nc-1")
    result = qemu_io(target, tmp_path, "read 0 512", initiator=initiator_iqn("nc-2"))
    assert result.returncode != 0 and "Target not found" in result.stderr


def test_an_unexported_volume_is_no_longer_served_and_its_account_is_gone(tgtd, tmp_path):
    create_volume(size=MiB, volume_id=VOLUME)
    target = export_volume(VOLUME, "nc-1")
    assert unexport_volume(VOLUME) is True
    assert unexport_volume(VOLUME) is False
    assert (tgtd.targets(), tgtd.accounts(), Export.objects.count()) == ({}, [], 0)
    assert qemu_io(target, tmp_path, "read 0 512").returncode != 0


def test_an_exported_volume_cannot_be_deleted(tgtd):
    create_volume(size=MiB, volume_id=VOLUME)
    export_volume(VOLUME, "nc-1")
    with pytest.raises(VolumeError) as caught:
        delete_volume(VOLUME)
    assert (caught.value.status, str(caught.value)) == (409, f"volume {VOLUME} is exported to node nc-1; detach it "
                                                             "first")


def test_after_tgtd_is_killed_the_reconcile_exports_every_volume_again_with_the_same_bytes(tgtd, tmp_path):
    create_volume(size=8 * MiB, volume_id=VOLUME)
    create_volume(size=8 * MiB, volume_id="vol-0000000b")
    first = export_volume(VOLUME, "nc-1")
    second = export_volume("vol-0000000b", "nc-2")
    through_iscsi(first, tmp_path, "write -P 0x5a 0 4M")
    through_iscsi(second, tmp_path, "write -P 0xa5 0 4M")
    pid = tgtd.pid()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while tgtd.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not tgtd.running()
    done = reconcile()
    assert (done.started, sorted(done.made), done.kept, done.removed) == (True, [1, 2], (), ())
    assert tgtd.pid() != pid
    through_iscsi(first, tmp_path, "read -P 0x5a 0 4M")
    through_iscsi(second, tmp_path, "read -P 0xa5 0 4M")


def test_a_second_reconcile_keeps_every_target_and_doubles_nothing(tgtd, tmp_path):
    create_volume(size=MiB, volume_id=VOLUME)
    target = export_volume(VOLUME, "nc-1")
    again = reconcile()
    assert (again.started, again.kept, again.made, again.removed) == (False, (1,), (), ())
    assert list(tgtd.targets()) == [1] and tgtd.accounts() == [target.chap_user]
    through_iscsi(target, tmp_path, "write -P 0x11 0 512", "read -P 0x11 0 512")


def test_a_restarted_sc_process_adopts_its_running_tgtd_and_keeps_every_target(tgtd, tmp_path, monkeypatch):
    from sc.services import targets

    create_volume(size=MiB, volume_id=VOLUME)
    target = export_volume(VOLUME, "nc-1")
    pid = tgtd.pid()
    monkeypatch.setattr(targets, "_servers", {})  # what a new process of the SC has: no child, only the pid file
    adopted = targets.target_server()
    assert adopted is not tgtd and adopted.pid() == pid
    done = reconcile()
    assert (done.started, done.kept, done.made, done.removed) == (False, (1,), (), ())
    through_iscsi(target, tmp_path, "write -P 0x21 0 512", "read -P 0x21 0 512")
    assert adopted.stop() and not tgtd.running()


def test_with_nothing_exported_the_reconcile_starts_no_tgtd(tgtd):
    create_volume(size=MiB, volume_id=VOLUME)
    assert reconcile() == Reconciled(False, (), (), (), ())
    assert not tgtd.running()


def test_the_reconcile_removes_targets_and_accounts_no_record_has_and_mends_a_changed_one(tgtd, tmp_path):
    create_volume(size=MiB, volume_id=VOLUME)
    target = export_volume(VOLUME, "nc-1")
    tgtd.tgtadm("--op", "new", "--mode", "target", "--tid", "7", "--targetname", "iqn.2026-12.org.educloud:stray")
    tgtd.tgtadm("--op", "new", "--mode", "account", "--user", "stray", "--password", "straystray1234")
    tgtd.tgtadm("--op", "unbind", "--mode", "target", "--tid", "1", "--initiator-name", target.initiator)
    done = reconcile()
    assert (sorted(done.removed), done.made, done.accounts_removed) == ([1, 7], (1,), ("stray",))
    assert list(tgtd.targets()) == [1] and tgtd.targets()[1].acl == [target.initiator]
    through_iscsi(target, tmp_path, "read 0 512")


def test_a_snapshot_of_an_attached_volume_restores_the_old_bytes_through_iscsi(tgtd, tmp_path):
    create_volume(size=16 * MiB, volume_id=VOLUME)
    target = export_volume(VOLUME, "nc-1")
    through_iscsi(target, tmp_path, "write -P 0x01 0 8M")
    snapshot = create_snapshot(VOLUME)
    assert tgtd.running()
    through_iscsi(target, tmp_path, "write -P 0x02 0 8M", "read -P 0x02 0 8M")
    with pytest.raises(VolumeError) as caught:
        restore_volume(VOLUME, snapshot.snapshot_id)
    assert caught.value.status == 409 and "detach it before restoring" in str(caught.value)
    unexport_volume(VOLUME)
    restore_volume(VOLUME, snapshot.snapshot_id)
    again = export_volume(VOLUME, "nc-1")
    through_iscsi(again, tmp_path, "read -P 0x01 0 8M")


def test_while_tgtd_is_paused_a_guests_write_waits_and_lands_after_none_lost(tgtd, tmp_path):
    create_volume(size=16 * MiB, volume_id=VOLUME)
    target = export_volume(VOLUME, "nc-1")
    through_iscsi(target, tmp_path, "read 0 512")  # logged in once, so the write below is not held at its login
    results = {}

    def writer() -> None:
        results["write"] = qemu_io(target, tmp_path, "write -P 0x7e 0 4M")

    with tgtd.paused():
        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(1.5)
        with open(volume_path(VOLUME), "rb") as file:
            held = file.read(4 * MiB)
        assert thread.is_alive() and held == bytes(4 * MiB)
    thread.join(timeout=60)
    assert results["write"].returncode == 0, results["write"].stderr
    with open(volume_path(VOLUME), "rb") as file:
        assert file.read(4 * MiB) == b"\x7e" * 4 * MiB


def test_a_snapshot_taken_while_a_guest_writes_fails_none_of_its_writes(tgtd, tmp_path):
    create_volume(size=64 * MiB, volume_id=VOLUME)
    target = export_volume(VOLUME, "nc-1")
    results = {}

    def writer() -> None:
        commands = [f"write -P 0x{n:02x} {n % 8 * 8}M 8M" for n in range(1, 41)]
        results["writes"] = qemu_io(target, tmp_path, *commands)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.3)
    snapshot = create_snapshot(VOLUME)
    thread.join(timeout=120)
    writes = results["writes"]
    assert writes.returncode == 0 and writes.stdout.count("wrote 8388608/8388608") == 40, writes.stderr
    for stripe in range(8):
        last = max(n for n in range(1, 41) if n % 8 == stripe)
        through_iscsi(target, tmp_path, f"read -P 0x{last:02x} {stripe * 8}M 8M")
    assert snapshot_path(snapshot.snapshot_id).stat().st_size == 64 * MiB


def test_the_target_listing_of_tgtadm_is_read_with_luns_accounts_and_acl():
    text = """Target 1: iqn.2026-12.org.educloud:vol-0000000a
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
        I_T nexus: 1
            Initiator: iqn.2026-12.org.educloud:node.nc-1 alias: nc-1
            Connection: 0
                IP Address: 127.0.0.1
    LUN information:
        LUN: 0
            Type: controller
            Backing store path: None
        LUN: 1
            Type: disk
            Backing store path: /data/sc/volumes/vol-0000000a.raw
    Account information:
        u0123
    ACL information:
        iqn.2026-12.org.educloud:node.nc-1
"""
    (target,) = parse_targets(text).values()
    assert (target.tid, target.iqn, target.luns, target.accounts, target.acl) == (
        1, "iqn.2026-12.org.educloud:vol-0000000a", {0: "None", 1: "/data/sc/volumes/vol-0000000a.raw"}, ["u0123"],
        ["iqn.2026-12.org.educloud:node.nc-1"])


def test_the_volume_target_answer_is_the_shared_contract():
    target = VolumeTarget(volume_id=VOLUME, host="127.0.0.1", port=3260, iqn=f"iqn.2026-12.org.educloud:{VOLUME}",
                          lun=1, chap_user="u0123", chap_secret="A" * 32, initiator=initiator_iqn("nc-1"))
    assert VolumeTarget.model_validate(target.model_dump(mode="json")) == target


def test_the_export_call_answers_the_volume_target_with_its_secret_and_a_delete_while_exported_is_a_409(
        tgtd, tmp_path, signed_client):
    from sc.tests.conftest import API

    create_volume(size=MiB, volume_id=VOLUME)
    response = signed_client.post(f"{API}/volumes/{VOLUME}/export/", {"node": "nc-1"})
    assert response.status_code == 200, response.json()
    target = VolumeTarget.model_validate(response.json())
    assert (target.host, target.port) == tgtd.listen
    through_iscsi(target, tmp_path, "write -P 0x42 0 512", "read -P 0x42 0 512")
    assert signed_client.get(f"{API}/volumes/{VOLUME}/").json()["exported_to"] == "nc-1"
    assert "chap_secret" not in signed_client.get(f"{API}/volumes/{VOLUME}/").content.decode()
    refused = signed_client.request("DELETE", f"{API}/volumes/{VOLUME}/")
    assert (refused.status_code, refused.json()["detail"]) == (
        409, f"volume {VOLUME} is exported to node nc-1; detach it first")
    other = signed_client.post(f"{API}/volumes/{VOLUME}/export/", {"node": "nc-2"})
    assert other.status_code == 409
    assert signed_client.request("DELETE", f"{API}/volumes/{VOLUME}/export/").status_code == 204
    assert signed_client.request("DELETE", f"{API}/volumes/{VOLUME}/").status_code == 204
