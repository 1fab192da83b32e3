"""End to end: a node controller without a join token is kept out until an administrator approves its key, and out
again once the key is revoked (CLC with walrus, CC and the node as separate processes over RabbitMQ).

The node makes its key at its first start, asks its CC to enrol it (passed on to the CLC) and logs the key's
fingerprint; until approval its registration waits, the CLC lists the key as pending with that fingerprint, and its
signed calls are refused. The administrator approves it through the API: the node registers and heartbeats, and runs
the commands its CC seals for it (it learns the CC's key from the CC), never one sealed by a host it does not trust.
The administrator revokes it: the CLC refuses the node's signed calls and its heartbeats (relayed by the CC) at once,
so it goes offline after the missed heartbeats, and sends it no command; its CC refuses its calls and parks its
heartbeats within the time it keeps the CLC's answers (``luhyaapi.trust.PEER_CACHE_SECONDS``). The test makes the
node's signed calls itself, with the node's key read from its data directory, so it does not wait for the node's
own next call."""

from __future__ import annotations

import json
import re
import time

import pytest

from luhyaapi.bus import RabbitMQBus
from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.commands import send_command
from luhyaapi.messages import Command
from luhyaapi.queues import CLC_STATUS, cc_status
from luhyaapi.trust import PEER_CACHE_SECONDS
from tests.keys import new_key
from tests.rabbitmq import scratch_vhost
from tests.services import ConsoleClient, RoleProcess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq]

HEARTBEAT = 1.0
NODE = "nc-new"
WAITS_FOR_APPROVAL = re.compile(r"enrolment: this host's key (SHA256:[A-Za-z0-9+/]+) waits for approval")
# A call the node makes to its CC (an image's data), here for an image nobody has: the CC answers 404 once it takes
# the node's signature, 401 while it does not.
NODE_CALL = "/cc/api/1.0/images/img-00000000/versions/current/data"
# A call the node makes to the CLC (its own trust record), answered at once from the CLC's records.
PEER_CALL = f"/clc/api/1.0/peers/{NODE}/"
CC_SENDER = "cc-1"
UNTRUSTED = f"refused: {NODE} is not a trusted host of this cloud (unknown, or its key was revoked)"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """The CLC (with walrus) and a CC enrolled with a join token, both online; the node is the test's to start."""
    workdir = tmp_path_factory.mktemp("enrolment")
    with scratch_vhost("educloud-enrolment") as bus_url:
        common = {"cloud": {"heartbeat_seconds": str(HEARTBEAT), "missed_heartbeats": "3"}, "bus": {"url": bus_url}}
        clc = RoleProcess(workdir, "clc-1", "clc,walrus", common)
        hosts = {"clc": clc}
        try:
            clc.start().wait_listening()
            hosts["cc"] = RoleProcess(workdir, "cc-1", "cc", common | {"cloud": common["cloud"] | {"clc_url": clc.url}},
                                      join_token=clc.issue_join_token(roles="cc"))
            hosts["cc"].start().wait_listening()
            # No join token: this node waits for an administrator.
            hosts["nc"] = RoleProcess(workdir, NODE, "nc",
                                      common | {"cloud": common["cloud"] | {"cc_url": hosts["cc"].url}})
            yield hosts | {"bus": RabbitMQBus(bus_url, publish_retry_seconds=10), "bus_url": bus_url}
        finally:
            for host in hosts.values():
                host.stop()
            for host in hosts.values():
                print(f"----- {host.name} log -----\n{host.tail(30)}")


def _services(admin: ConsoleClient) -> dict[str, dict]:
    return {f"{s['role']}:{s['name']}": s for s in admin.get("/clc/api/1.0/status/")["services"]}


def _servers(admin: ConsoleClient) -> set[tuple[str, str]]:
    listing = admin.get("/clc/api/1.0/servers/")
    return {(server["role"], server["name"]) for server in listing.get("results", listing)}


def _parked(bus: RabbitMQBus, queue: str, seen: list) -> list[tuple[str, str]]:
    """Every (sender, reason) parked on ``queue`` so far (taken off its dead-letter queue into ``seen``)."""
    seen += [(json.loads(letter.body)["sender"], letter.reason) for letter in bus.take_dead_letters(queue)]
    return seen


def _command_task(clc: RoleProcess, cc: RoleProcess, task_id: str) -> dict:
    """The live state of a command task as the CC folds it from Celery's events (asked as the CLC asks); {} while
    the CC has not heard of it."""
    try:
        return RoleClient(cc.url, clc.key()).get(f"/cc/api/1.0/tasks/{task_id}/")
    except RemoteError as exc:
        if exc.status == 404:
            return {}
        raise


def _command(admin: ConsoleClient) -> int | str:
    """Ask the CLC to have the node report at once; the command's id, or the status of the refusal."""
    try:
        return admin.post(f"/clc/api/1.0/nodes/{NODE}/commands/", {"op": "status/report"})["msg_id"]
    except RemoteError as exc:
        return exc.status


def _refusal(client: RoleClient, path: str) -> int:
    """The status of ``client``'s GET ``path`` (200 if it was answered)."""
    try:
        client.get(path)
    except RemoteError as exc:
        return exc.status
    return 200


def test_a_node_without_a_join_token_waits_for_approval_then_works_until_its_key_is_revoked(cloud):
    clc, cc, nc = cloud["clc"], cloud["cc"], cloud["nc"]
    admin = ConsoleClient(clc.url)
    wait_for("the CC online", lambda: _services(admin).get("cc:cc-1", {}).get("state") == "online", 60)

    started = time.monotonic()
    nc.start().wait_listening()
    logged = wait_for("the node to log its key's fingerprint", lambda: WAITS_FOR_APPROVAL.search(nc.tail(200)), 60)
    key = nc.key()
    assert logged[1] == key.fingerprint, "the fingerprint the node logs is its key's"

    # Out: the CLC lists the key as pending, the node's signed calls are refused, its registration never came.
    pending = admin.get("/clc/api/1.0/hostkeys/?state=pending")["results"]
    assert [(k["name"], k["fingerprint"], k["kind"], k["roles"], k["cluster"]) for k in pending] == [
        (NODE, key.fingerprint, "server", ["nc"], "cluster1")]
    assert _refusal(RoleClient(clc.url, key), PEER_CALL) == 401
    time.sleep(3 * HEARTBEAT)  # time enough to register and heartbeat, were it let in
    assert ("nc", NODE) not in _servers(admin)
    assert f"nc:{NODE}" not in _services(admin)
    assert "heartbeat: nc registered" not in nc.tail(200)

    approved = admin.post(f"/clc/api/1.0/hostkeys/{NODE}/approve/", {"fingerprint": key.fingerprint})
    approved_at = time.monotonic()
    assert (approved["state"], approved["approved_by"], approved["fingerprint"]) == ("active", "admin",
                                                                                    key.fingerprint)
    print(f"approved {time.monotonic() - started:.1f} s after the node started")

    # In: it registers (through its CC) and heartbeats; its signed calls are taken by the CLC and its CC.
    first = wait_for("the node registered and its first heartbeat", lambda: (lambda s: s and s["state"] == "online"
                     and s["free_memory_mb"] > 0 and s)(_services(admin).get(f"nc:{NODE}")), 90)
    print(f"registered and heartbeating {time.monotonic() - approved_at:.1f} s after the approval")
    assert first["cluster"] == "cluster1" and first["api_url"] == nc.url
    assert ("nc", NODE) in _servers(admin)
    wait_for("another heartbeat", lambda: _services(admin)[f"nc:{NODE}"]["last_seen"] > first["last_seen"], 30)
    assert RoleClient(clc.url, key).get(PEER_CALL)["public_key"] == key.public_key
    with pytest.raises(RemoteError) as taken:
        RoleClient(cc.url, key).get(NODE_CALL)
    assert taken.value.status == 404 and "walrus has no image" in taken.value.detail, taken.value

    # Its CC's commands run (the node checks their seal with the CC's key, which it asks the CC for); a command sealed
    # by a host nobody trusts fails on the node (the CC reads why from Celery's events) and never runs.
    bus, parked = cloud["bus"], {CLC_STATUS: [], cc_status("cluster1"): []}
    command = _command(admin)
    wait_for("the node to run its CC's command", lambda: _services(admin)[f"nc:{NODE}"]["last_command"] == command,
             30)
    intruder = send_command(cloud["bus_url"], NODE, Command(op="status/report"), key=new_key("intruder"))
    refused = wait_for("the node to refuse the intruder's command, as its CC sees it through Celery",
                       lambda: _command_task(clc, cc, intruder).get("state") == "failed"
                       and _command_task(clc, cc, intruder), 30)
    assert (refused["op"], refused["worker"]) == ("status/report", f"nc@{NODE}")
    assert "refused: intruder is not a trusted host of this cloud (unknown, or its key was revoked)" in \
        refused["reason"]
    beat = _services(admin)[f"nc:{NODE}"]["last_seen"]
    wait_for("a heartbeat after that", lambda: _services(admin)[f"nc:{NODE}"]["last_seen"] > beat, 10)
    assert _services(admin)[f"nc:{NODE}"]["last_command"] == command, "the intruder's command did not run"
    assert _parked(bus, CLC_STATUS, parked[CLC_STATUS]) == _parked(bus, cc_status("cluster1"), []) == []

    revoked = admin.post(f"/clc/api/1.0/hostkeys/{NODE}/revoke/", {})
    revoked_at = time.monotonic()
    assert (revoked["state"], revoked["revoked_by"]) == ("revoked", "admin")
    assert _refusal(RoleClient(clc.url, key), PEER_CALL) == 401, "the CLC refuses a revoked key at once"
    assert _command(admin) == 409, "the CLC sends a revoked node no command"

    # Its heartbeats stop counting on the CLC at once (the CC still relays them: it has not been told yet), so it goes
    # offline after the missed heartbeats.
    wait_for("the revoked node offline on the CLC", lambda: _services(admin)[f"nc:{NODE}"]["state"] == "offline",
             PEER_CACHE_SECONDS)
    offline_after = time.monotonic() - revoked_at
    assert (CC_SENDER, UNTRUSTED) in _parked(bus, CLC_STATUS, parked[CLC_STATUS])
    print(f"the CLC had the revoked node offline {offline_after:.1f} s after the revocation (3 missed heartbeats of "
          f"{HEARTBEAT:g} s)")
    assert offline_after <= 10 * HEARTBEAT + 5

    wait_for("the CC to refuse the revoked key", lambda: _refusal(RoleClient(cc.url, key), NODE_CALL) == 401,
             PEER_CACHE_SECONDS + 10, every=1.0)
    refused_after = time.monotonic() - revoked_at
    print(f"the CC refused the revoked key {refused_after:.1f} s after the revocation "
          f"({time.monotonic() - approved_at:.1f} s after the approval; it keeps the CLC's answers "
          f"{PEER_CACHE_SECONDS} s)")
    assert refused_after <= PEER_CACHE_SECONDS + 5
    wait_for("the CC to park the revoked node's heartbeats", lambda: (NODE, UNTRUSTED) in _parked(
        bus, cc_status("cluster1"), parked[cc_status("cluster1")]), 10)
    print(f"the CC parked the revoked node's heartbeats {time.monotonic() - revoked_at:.1f} s after the revocation")
    assert {sender for sender, _reason in parked[cc_status("cluster1")]} == {NODE}
    assert _services(admin)[f"nc:{NODE}"]["state"] == "offline"
    assert _command(admin) == 409
    assert admin.get("/clc/api/1.0/hostkeys/?state=revoked")["results"][0]["name"] == NODE
