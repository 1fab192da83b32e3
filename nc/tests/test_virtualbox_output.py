"""Each VBoxManage output format the driver reads is parsed by key or column, from VBoxManage 7's documented output."""

from nc.drivers.virtualbox_output import (
    PAUSED_STATES,
    RUNNING_STATES,
    STOPPED_STATES,
    Sample,
    parse_blocks,
    parse_guest_properties,
    parse_machinereadable,
    parse_metrics_query,
    parse_statistics,
    parse_version,
    parse_vm_list,
)
from nc.tests.test_virtualbox_fake import (
    DEBUGVM_STATISTICS,
    GUESTPROPERTY_ENUMERATE,
    LIST_EXTPACKS,
    LIST_HDDS,
    METRICS_QUERY,
    METRICS_QUERY_EMPTY,
    SHOWMEDIUMINFO_CHILD,
    SHOWVMINFO_TEMPLATE,
    SNAPSHOT_LINES,
    VBOXDRV_WARNING,
)

INFO = SHOWVMINFO_TEMPLATE.format(name="ins-0123abcd", vm_dir="/vms/ins-0123abcd", state="running",
                                  snapshots=SNAPSHOT_LINES)


def test_machinereadable_values_are_found_by_key_whatever_their_line():
    info = parse_machinereadable(INFO)
    assert info["VMState"] == "running"
    assert info["vrdeports"] == "5901"
    assert info["vrdeaddress"] == "127.0.0.1"
    assert info["memory"] == "512"
    assert info["vrdeport"] == "-1"
    shuffled = parse_machinereadable("\n".join(reversed(INFO.splitlines())))
    assert shuffled == info


def test_machinereadable_quoted_names_and_escaped_values_are_unquoted():
    info = parse_machinereadable(INFO)
    assert info["SATA-0-0"] == "/vms/ins-0123abcd/disk0.vdi"
    assert info["description"] == 'lab "A" desktop'
    assert info["Forwarding(0)"] == "tcp2222,tcp,127.0.0.1,2222,,22"
    assert info["SnapshotName"] == "educloud-clean"


def test_machinereadable_ignores_lines_that_are_not_key_value():
    assert "Encryption:     disabled" not in parse_machinereadable(INFO)
    assert parse_machinereadable("") == {}


def test_every_vm_state_vboxmanage_prints_belongs_to_exactly_one_group():
    printed = {"poweroff", "saved", "teleported", "aborted", "aborted-saved", "running", "paused", "gurumeditation",
               "teleporting", "livesnapshotting", "starting", "stopping", "saving", "restoring",
               "teleportingpausedvm", "teleportingin", "deletingsnapshotlive", "deletingsnapshotlivepaused",
               "onlinesnapshotting", "restoringsnapshot", "deletingsnapshot", "settingup", "snapshotting"}
    assert RUNNING_STATES | PAUSED_STATES | STOPPED_STATES == printed
    assert not RUNNING_STATES & PAUSED_STATES and not RUNNING_STATES & STOPPED_STATES
    assert not PAUSED_STATES & STOPPED_STATES


def test_list_vms_lines_give_name_and_uuid():
    text = ('"ins-0123abcd" {5d1c7e8e-8a55-4c7e-9b2a-6d1f0e3a9c11}\n'
            '"Windows 10 lab" {a1b2c3d4-0000-4000-8000-0000000001}\n')
    assert parse_vm_list(text) == [("ins-0123abcd", "5d1c7e8e-8a55-4c7e-9b2a-6d1f0e3a9c11"),
                                   ("Windows 10 lab", "a1b2c3d4-0000-4000-8000-0000000001")]
    assert parse_vm_list("") == []


def test_list_hdds_blocks_give_uuid_parent_and_location():
    blocks = parse_blocks(LIST_HDDS.format(vm_dir="/vms/ins-0123abcd"))
    assert len(blocks) == 4
    assert blocks[0]["Parent UUID"] == "base"
    assert blocks[2]["Location"] == "/vms/ins-0123abcd/disk0.vdi"
    assert blocks[2]["Parent UUID"] == blocks[0]["UUID"]


def test_showmediuminfo_gives_the_parent_of_a_differencing_image():
    (block,) = parse_blocks(SHOWMEDIUMINFO_CHILD.format(path="/images/child.vdi"))
    assert block["Parent UUID"] == "0b1e9d3c-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
    assert block["Type"] == "normal (differencing)"


def test_list_extpacks_gives_each_packs_vrde_module():
    (block,) = parse_blocks(LIST_EXTPACKS)
    assert block["VRDE Module"] == "VBoxVRDP"
    assert block["Usable"] == "true"


def test_guest_properties_are_read_from_padded_name_value_lines():
    properties = parse_guest_properties(GUESTPROPERTY_ENUMERATE)
    assert properties["/VirtualBox/GuestInfo/Net/0/V4/IP"] == "10.0.2.15"
    assert properties["/VirtualBox/GuestInfo/OS/Release"] == "6.1.0-18-amd64"
    assert len(properties) == 11


def test_guest_property_values_may_hold_quotes_and_none_found_is_empty():
    assert parse_guest_properties("/Custom/Motd = 'it's here'\n") == {"/Custom/Motd": "it's here"}
    assert parse_guest_properties("No properties found.\n") == {}


def test_metrics_query_gives_the_latest_sample_with_its_unit():
    samples = parse_metrics_query(METRICS_QUERY.format(name="ins-0123abcd"), "ins-0123abcd")
    assert samples["CPU/Load/User"] == Sample(12.5, "%")
    assert samples["RAM/Usage/Used"] == Sample(524288, "kB")
    assert samples["Disk/Usage/Used"] == Sample(2048, "mB")
    assert samples["Net/Rate/Rx"] == Sample(1500, "B/s")


def test_metrics_query_takes_the_last_of_several_samples_and_skips_other_objects():
    text = ("ins-0123abcd    RAM/Usage/Used                           1000 kB, 2000 kB, 3000 kB\n"
            "host            RAM/Usage/Used                           99 kB\n")
    assert parse_metrics_query(text, "ins-0123abcd") == {"RAM/Usage/Used": Sample(3000, "kB")}
    assert parse_metrics_query(METRICS_QUERY_EMPTY, "ins-0123abcd") == {}


def test_debugvm_statistics_give_counter_and_u64_values_by_name():
    counters = parse_statistics(DEBUGVM_STATISTICS)
    assert counters["/TM/CPU/00/cNsExecuting"] == 41250000000
    assert counters["/Public/Storage/AHCI0/Port0/BytesRead"] == 104857600
    assert counters["/Public/NetAdapter/0/BytesTransmitted"] == 65432
    assert len(counters) == 9


def test_debugvm_statistics_that_are_not_xml_give_nothing():
    assert parse_statistics("") == {}
    assert parse_statistics("VBoxManage: error: Machine is not running") == {}


def test_version_is_read_after_the_kernel_module_warning():
    assert parse_version("7.0.14r161095\n") == (7, 0, 14)
    assert parse_version(VBOXDRV_WARNING) == (7, 0, 14)
    assert parse_version("Oracle VM VirtualBox Command Line Management Interface\n") is None
