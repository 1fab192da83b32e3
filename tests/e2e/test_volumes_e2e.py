"""Volumes end to end on one host running every role but watch (CLC, walrus, CC, NC with real QEMU, SC with its own
tgtd), driven through the CLC's API only, as the console's pages drive it: a volume made on the SC, attached to a
running test VM (the SC exports it to the node, the CC queues the hot-plug, the node reports it attached and the CLC
shows it in use), written through the guest's block CGI, snapshotted, overwritten, detached, restored to the
snapshot and attached to a second VM, which reads the snapshot's bytes; that VM stopped and started again gets its
volume back at start (every run carries the instance's volumes); the refusals the issue names (an attached volume,
a stopped instance) answer 409 with nothing changed. And the SC's target daemon killed under a guest with two
volumes: the guest reads and writes both again once the SC serves them again."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time

import pytest
import requests

from luhyaapi.client import RemoteError
from tests.iscsi import tgt_missing
from tests.services import (
    ConsoleClient,
    allinone_host,
    free_port,
    free_tgt_control_port,
    instance_record,
    processes_mentioning,
    wait_for,
)

pytestmark = [pytest.mark.e2e]

MIB = 2**20
OFFSET = 8192


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    if tgt_missing():
        pytest.skip(tgt_missing())
    control = free_tgt_control_port()
    try:
        with allinone_host(tmp_path_factory.mktemp("vol"), ports=20, stop_timeout=20,
                           sc={"iscsi_listen": f"127.0.0.1:{free_port()}", "tgt_control_port": str(control),
                               "capacity_gb": "2"}) as (aio, image):
            yield aio, image, control
    finally:
        if processes_mentioning(f"tgtd -f -C {control} "):  # tgtd ignores SIGTERM while it has targets
            subprocess.run(["tgtadm", "-C", str(control), "--op", "delete", "--mode", "system"], check=False,
                           timeout=30)


def _online(client: ConsoleClient) -> bool:
    services = {(s["role"], s["state"]) for s in client.get("/clc/api/1.0/status/")["services"]}
    return services >= {("nc", "online"), ("walrus", "online"), ("cc", "online"), ("sc", "online")}


def _running(client: ConsoleClient, image_id: str, name: str) -> tuple[str, str]:
    """A new instance of the test image, run until its page answers: its id and its page's URL."""
    instance = client.post("/clc/api/1.0/instances/", {
        "name": name, "kind": "rvd", "image": image_id, "vm_type": "tiny", "owner_group": "edu", "services": [80]})
    insid = instance["instance_id"]
    client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    return insid, _page_when_running(client, insid)


def _page_when_running(client: ConsoleClient, insid: str) -> str:
    wait_for(f"{insid} running", lambda: _state(client, insid) == "running", 300)
    return instance_record(client, insid)["access"]["http"]


def _state(client: ConsoleClient, insid: str) -> str:
    record = instance_record(client, insid)
    assert record["state"] != "failed", record
    return record["state"]


def _volume(client: ConsoleClient, volume_id: str) -> dict:
    return client.get(f"/clc/api/1.0/volumes/{volume_id}/")


def _volume_becomes(client: ConsoleClient, volume_id: str, state: str, timeout: float = 120) -> dict:
    def reached() -> bool:
        record = _volume(client, volume_id)
        assert record["state"] not in ("failed",), record
        return record["state"] == state

    wait_for(f"{volume_id} {state}", reached, timeout)
    return _volume(client, volume_id)


def _guest(page: str, cgi: str, **params) -> requests.Response:
    return requests.get(f"{page.rstrip('/')}/cgi-bin/{cgi}", params=params, timeout=30)


def _write(page: str, volume_id: str, text: str) -> None:
    # "in-use" means QEMU has the disk; the guest's kernel finds a hot-plugged disk a moment later.
    wait_for(f"{volume_id} seen by the guest", lambda: _sees(page, volume_id), 60)
    written = _guest(page, "blockwrite", serial=volume_id, offset=OFFSET, text=text)
    assert written.status_code == 200, written.text


def _sees(page: str, volume_id: str) -> bool:
    try:
        return _guest(page, "blockread", serial=volume_id, offset=OFFSET, length=1).status_code == 200
    except requests.RequestException:
        return False


def _read(page: str, volume_id: str, length: int) -> str:
    """What the guest reads at OFFSET of the disk whose serial is the volume's id ('' until it sees that disk)."""
    try:
        response = _guest(page, "blockread", serial=volume_id, offset=OFFSET, length=length)
    except requests.RequestException:
        return ""
    return response.text if response.status_code == 200 else ""


def _refused(call) -> RemoteError:
    with pytest.raises(RemoteError) as caught:
        call()
    return caught.value


@pytest.fixture(scope="module")
def image_id(host) -> str:
    aio, image, _ = host
    client = ConsoleClient(aio.url)
    wait_for("every role online", lambda: _online(client), 90)
    return client.upload_image(image, "Volume test VM")["image_id"]


def _stop_and_delete(client: ConsoleClient, *insids: str) -> None:
    for insid in insids:
        client.post(f"/clc/api/1.0/instances/{insid}/stop/", {})
    for insid in insids:
        wait_for(f"{insid} stopped", lambda insid=insid: _state(client, insid) == "stopped", 120)
        client.request("DELETE", f"/clc/api/1.0/instances/{insid}/")


def test_a_volume_goes_from_guest_to_snapshot_to_another_guest_and_back_after_a_restart(host, image_id):
    client = ConsoleClient(host[0].url)
    first, first_page = _running(client, image_id, "volume writer")

    volume = client.post("/clc/api/1.0/volumes/", {"name": "class data", "owner_group": "edu", "size": 64 * MIB})
    volume_id = volume["volume_id"]
    assert (volume["state"], volume["size"]) == ("available", 64 * MIB), volume
    started = time.monotonic()
    client.post(f"/clc/api/1.0/volumes/{volume_id}/attach/", {"instance_id": first})
    attached = _volume_becomes(client, volume_id, "in-use")
    print(f"attach -> in use in {time.monotonic() - started:.1f} s: {attached['device']}")
    assert attached["instance"] == first

    old = secrets.token_hex(16)
    _write(first_page, volume_id, old)
    assert _read(first_page, volume_id, len(old)) == old
    snapshot = client.post(f"/clc/api/1.0/volumes/{volume_id}/snapshots/", {})
    new = secrets.token_hex(16)
    _write(first_page, volume_id, new)
    assert _read(first_page, volume_id, len(new)) == new

    refusal = _refused(lambda: client.post(f"/clc/api/1.0/volumes/{volume_id}/restore/",
                                           {"snapshot_id": snapshot["snapshot_id"]}))
    assert refusal.status == 409, "a snapshot is not restored under a guest that uses the volume"
    client.post(f"/clc/api/1.0/volumes/{volume_id}/detach/", {})
    _volume_becomes(client, volume_id, "available")
    wait_for("the guest to let go of the disk", lambda: _read(first_page, volume_id, len(new)) == "", 60)

    client.post(f"/clc/api/1.0/volumes/{volume_id}/restore/", {"snapshot_id": snapshot["snapshot_id"]})
    second, second_page = _running(client, image_id, "volume reader")
    client.post(f"/clc/api/1.0/volumes/{volume_id}/attach/", {"instance_id": second})
    _volume_becomes(client, volume_id, "in-use")
    wait_for("the snapshot's bytes in the second guest", lambda: _read(second_page, volume_id, len(old)) == old, 60)

    refusal = _refused(lambda: client.post(f"/clc/api/1.0/volumes/{volume_id}/attach/", {"instance_id": first}))
    assert refusal.status == 409 and second in str(refusal.body), refusal.body

    # Stopped with its volume: still in use, refused a detach, and given it again at its next start.
    client.post(f"/clc/api/1.0/instances/{second}/stop/", {})
    wait_for(f"{second} stopped", lambda: _state(client, second) == "stopped", 120)
    assert _volume(client, volume_id)["state"] == "in-use"
    refusal = _refused(lambda: client.post(f"/clc/api/1.0/volumes/{volume_id}/detach/", {}))
    assert refusal.status == 409, refusal.body
    client.post(f"/clc/api/1.0/instances/{second}/run/", {})
    second_page = _page_when_running(client, second)
    wait_for("the volume back in the restarted guest", lambda: _read(second_page, volume_id, len(old)) == old, 90)

    client.post(f"/clc/api/1.0/volumes/{volume_id}/detach/", {})
    _volume_becomes(client, volume_id, "available")
    _stop_and_delete(client, first, second)
    client.request("DELETE", f"/clc/api/1.0/snapshots/{snapshot['snapshot_id']}/")
    client.request("DELETE", f"/clc/api/1.0/volumes/{volume_id}/")
    assert _refused(lambda: _volume(client, volume_id)).status == 404


def test_guests_keep_their_two_volumes_when_the_scs_target_daemon_is_killed(host, image_id):
    """The SC's tgtd killed with SIGKILL while a guest has two of its volumes: the SC's target daemon serves the same
    targets again from its records (same names, secrets, initiators) and the guest reads and writes both disks
    again, the bytes written before the kill still there."""
    aio, _, control = host
    client = ConsoleClient(aio.url)
    insid, page = _running(client, image_id, "two disks")
    volumes = [client.post("/clc/api/1.0/volumes/", {"name": f"disk {n}", "owner_group": "edu", "size": 32 * MIB})
               ["volume_id"] for n in (1, 2)]
    before = {}
    for volume_id in volumes:
        client.post(f"/clc/api/1.0/volumes/{volume_id}/attach/", {"instance_id": insid})
        _volume_becomes(client, volume_id, "in-use")
        before[volume_id] = secrets.token_hex(16)
        _write(page, volume_id, before[volume_id])

    [tgtd] = processes_mentioning(f"tgtd -f -C {control} ")
    os.kill(tgtd, signal.SIGKILL)
    wait_for("the SC's tgtd serving again", lambda: [pid for pid in processes_mentioning(f"tgtd -f -C {control} ")
                                                     if pid != tgtd], 60)
    for volume_id in volumes:
        wait_for(f"{volume_id} read again by the guest", lambda volume_id=volume_id: _read(
            page, volume_id, len(before[volume_id])) == before[volume_id], 120)
        after = secrets.token_hex(16)
        _write(page, volume_id, after)
        assert _read(page, volume_id, len(after)) == after
    assert all(_volume(client, volume_id)["state"] == "in-use" for volume_id in volumes)

    for volume_id in volumes:
        client.post(f"/clc/api/1.0/volumes/{volume_id}/detach/", {})
        _volume_becomes(client, volume_id, "available")
        client.request("DELETE", f"/clc/api/1.0/volumes/{volume_id}/")
    _stop_and_delete(client, insid)
