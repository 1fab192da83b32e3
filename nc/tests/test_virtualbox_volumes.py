"""The VirtualBox driver's volumes (issue 16) against the recording VBoxManage: the exact argv of the iSCSI
hot-plug and unplug as VBoxManage's storageattach takes them (VBoxManageStorageController.cpp's option table:
``--server``, ``--tport``, ``--target``, ``--lun``, ``--username``, ``--passwordfile``, ``--initiator``), the CHAP
secret only in a private file for the call, never on a command line or in an error, and the attachment found
again from ``showvminfo`` (nothing attached twice)."""

from __future__ import annotations

import pytest

from luhyaapi.volumes import VolumeTarget, initiator_iqn, target_iqn
from nc.drivers import virtualbox_argv as vbox
from nc.drivers.base import AttachedVolume, DriverError, InvalidVMName, VMNotFound, VMNotRunning
from nc.drivers.virtualbox import VirtualBoxDriver
from nc.tests.test_virtualbox_driver import INSID, make_spec
from nc.tests.test_virtualbox_fake import FakeVBoxManage

VOLUME = "vol-0000c0de"
SECRET = "VBoxChap0Secret0"


def target(volume_id: str = VOLUME) -> VolumeTarget:
    return VolumeTarget(volume_id=volume_id, host="10.0.0.5", port=3261, iqn=target_iqn(volume_id),
                        chap_user="u0042", chap_secret=SECRET, initiator=initiator_iqn("nc-1"))


@pytest.fixture
def fake():
    return FakeVBoxManage()


@pytest.fixture
def root(tmp_path):
    return tmp_path / "vms"


@pytest.fixture
def driver(root, fake):
    return VirtualBoxDriver(root, runner=fake)


@pytest.fixture
def running(driver, fake, root):
    driver.create(make_spec(root, disk_type="sata"))
    fake.vms[INSID]["state"] = "running"
    fake.calls.clear()
    return driver


def test_every_vm_gets_a_sata_controller_with_every_port_for_volumes(root):
    assert vbox.storagectl_volumes(make_spec(root, disk_type="ide")) == [
        "storagectl", INSID, "--name", "SATA", "--add", "sata", "--controller", "IntelAhci", "--portcount", "30",
        "--bootable", "off"]
    # A VM whose own disks are SATA has the controller already: only its ports grow.
    assert vbox.storagectl_volumes(make_spec(root, disk_type="sata")) == [
        "storagectl", INSID, "--name", "SATA", "--portcount", "30"]


def test_attach_hot_plugs_the_iscsi_target_on_the_first_free_port_with_the_secret_from_a_private_file(
        running, fake, root):
    attached = running.attach_volume(INSID, target())
    assert attached == AttachedVolume(VOLUME, "SATA-1-0", "")
    [show, attach] = fake.calls
    assert show == vbox.showvminfo(INSID)
    password_file = root / INSID / f"chap-{VOLUME}"
    assert attach == ["storageattach", INSID, "--storagectl", "SATA", "--port", "1", "--device", "0",
                      "--type", "hdd", "--medium", "iscsi", "--server", "10.0.0.5", "--tport", "3261",
                      "--target", target_iqn(VOLUME), "--lun", "1", "--username", "u0042",
                      "--passwordfile", str(password_file), "--initiator", initiator_iqn("nc-1")]
    assert fake.password_files == [SECRET]
    assert not password_file.exists()
    assert all(SECRET not in arg for call in fake.calls for arg in call)


def test_an_attached_volume_is_found_again_and_not_attached_twice(running, fake):
    running.attach_volume(INSID, target())
    second = running.attach_volume(INSID, target("vol-0000c0df"))
    assert second.device == "SATA-2-0"
    fake.calls.clear()
    assert running.attach_volume(INSID, target()) == AttachedVolume(VOLUME, "SATA-1-0", "")
    assert fake.commands() == ["showvminfo"]
    assert running.attached_volumes(INSID) == [AttachedVolume(VOLUME, "SATA-1-0", ""),
                                               AttachedVolume("vol-0000c0df", "SATA-2-0", "")]


def test_detach_unplugs_its_port_then_closes_the_iscsi_medium(running, fake):
    running.attach_volume(INSID, target())
    fake.calls.clear()
    running.detach_volume(INSID, VOLUME)
    assert fake.calls[1:] == [
        ["storageattach", INSID, "--storagectl", "SATA", "--port", "1", "--device", "0", "--medium", "none"],
        ["closemedium", "disk", "0b0e0e0e-0000-4000-8000-000000000001"]]
    assert running.attached_volumes(INSID) == []
    fake.calls.clear()
    running.detach_volume(INSID, VOLUME)  # not attached: nothing to do
    assert fake.commands() == ["showvminfo"]


def test_a_refused_attach_carries_vboxmanages_message_and_not_the_secret(running, fake, root):
    fake.fail["storageattach"] = "iSCSI: target login failed (VERR_ACCESS_DENIED)"
    with pytest.raises(DriverError, match="VERR_ACCESS_DENIED") as refused:
        running.attach_volume(INSID, target())
    assert SECRET not in str(refused.value)
    assert not (root / INSID / f"chap-{VOLUME}").exists()


def test_a_stopped_or_unknown_vm_takes_no_volume(driver, fake, root):
    driver.create(make_spec(root))
    with pytest.raises(VMNotRunning):
        driver.attach_volume(INSID, target())
    assert driver.attached_volumes(INSID) == []
    with pytest.raises(VMNotFound):
        driver.attach_volume("ins-0000ffff", target())


def test_hostile_values_never_reach_vboxmanage(root):
    with pytest.raises(InvalidVMName):
        vbox.storageattach_iscsi("ins-;rm", 1, target(), root / "secret")
    with pytest.raises(InvalidVMName):
        vbox.storageattach_iscsi(INSID, 1, target(), "/tmp/a b")
    with pytest.raises(ValueError, match="SATA port"):
        vbox.storagedetach(INSID, 30)
