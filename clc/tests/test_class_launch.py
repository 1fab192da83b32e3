"""A class's launches: many runs at once against a real cluster controller's API, each ending in one truth (placed,
with its console, or refused with a reason; never running without a console), a lost answer that converges, the
placer that places what no request did, and a run that ended forgetting its console and addresses."""

from __future__ import annotations

import secrets
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from cc.models import ClusterInstance, ClusterNode
from cc.services.instances import note_instance_status
from cc.services.scheduler import HOST_RESERVE_MB
from clc.services import instances as instance_service
from clc.services.instances import ASK_AGAIN_SECONDS, GIVE_UP_SECONDS, place_pending
from clc.services.status import StatusFolder
from daemons.host import web_server
from luhyaapi.messages import InsStatus
from luhyadb.models import Image, ImageVersion, Instance, OwnerGroup, Server, VMType
from tests.commands import queued
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

CLASS_SIZE = 20
NODE_FITS = 12  # of the class's tiny desktops, by memory
TINY_MB = 256


def make_cloud(url: str, cluster: str) -> None:
    """An all-in-one as the CLC and its CC know it: the CC at ``url``, online; one trusted node with room for
    ``NODE_FITS`` tiny desktops; an image with a file and the VM types."""
    now = datetime.now(tz=UTC)
    Server.objects.create(name="aio", role="cc", ip="127.0.0.1", cluster=cluster, api_url=url, state="online",
                          last_seen=now)
    Server.objects.create(name="nc-1", role="nc", ip="127.0.0.1", cluster=cluster, state="online")
    enrolled_key("nc-1")
    ClusterNode.objects.create(name="nc-1", role="nc", ip="127.0.0.1", cpus=16,
                               memory_mb=HOST_RESERVE_MB + NODE_FITS * TINY_MB, disk_mb=10**6, free_disk_mb=10**6,
                               last_seen=now)
    group = OwnerGroup.objects.create(name="root", path="edu")
    image = Image.objects.create(image_id="img-0000abcd", name="Class desktop", owner_group=group, current_version=1)
    ImageVersion.objects.create(image=image, number=1, label="1.0.0", size_bytes=1024, sha256="b" * 64,
                                format="qcow2")
    VMType.objects.create(name="tiny", cpus=1, memory_mb=TINY_MB, disk_gb=1)
    VMType.objects.create(name="huge", cpus=1, memory_mb=65536, disk_gb=1)


def desktop(number: int = 1, vm_type: str = "tiny") -> Instance:
    return Instance.objects.create(instance_id=f"ins-{number:08x}", name=f"Desk {number}", kind="rvd",
                                   image=Image.objects.get(), vm_type=VMType.objects.get(name=vm_type),
                                   owner_group=OwnerGroup.objects.get(), services=[80],
                                   mac=f"52:54:00:00:{number >> 8:02x}:{number & 255:02x}")


def place_until_settled(seconds: float = 60.0) -> None:
    """The placer's rounds (as the ``clc-placer`` daemon runs them, each as if the last ask were long enough ago to
    ask again) until no run waits for a cluster."""
    deadline = datetime.now(tz=UTC) + timedelta(seconds=seconds)
    while Instance.objects.exclude(placing="").exists():
        assert datetime.now(tz=UTC) < deadline, list(Instance.objects.exclude(placing="").values(
            "instance_id", "placing", "message"))
        place_pending(now=datetime.now(tz=UTC) + timedelta(seconds=ASK_AGAIN_SECONDS + 1))
        threading.Event().wait(0.2)


def assert_one_truth(instance: Instance) -> str:
    """The instance is placed (its console and access the CC's own) or not placed anywhere; says which."""
    placed = ClusterInstance.objects.filter(instance_id=instance.instance_id).first()
    assert instance.placing == ""
    if instance.state in ("defined", "failed"):
        assert placed is None, f"{instance.instance_id} is {instance.state} but the CC placed it"
        assert (instance.console_url, instance.access) == ("", {})
        assert "no cluster could run it" in instance.message
        return "refused"
    assert placed is not None, f"{instance.instance_id} is {instance.state} but the CC has no placement of it"
    assert (instance.state, instance.node, instance.access) == ("scheduled", placed.node, placed.access)
    assert instance.console_url == placed.access["console"] != ""
    return "placed"


@pytest.fixture
def waitress_cloud(cloud_at, tmp_path, settings):
    """The product's web server (waitress) with few threads, serving the CLC and the CC of an all-in-one."""
    if connection.vendor == "sqlite":
        pytest.skip("a real web server's threads share the database only on MariaDB (in-memory SQLite is per "
                    "connection); the MariaDB run proves the class's launches")
    server = web_server("127.0.0.1", 0, threads=6)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.effective_port}"
    config = cloud_at(url, data_dir=tmp_path / "host", name="aio")
    make_cloud(url, config.cluster)
    yield url
    server.close()
    thread.join(10)


def logged_in_session() -> requests.Session:
    """A browser's session of the administrator: its session cookie and the CSRF token it sends on writes."""
    client = Client()
    client.force_login(get_user_model().objects.create_user("teacher", is_staff=True, is_superuser=True))
    token = secrets.token_hex(16)
    session = requests.Session()
    session.cookies.set(django_settings.SESSION_COOKIE_NAME, client.cookies[django_settings.SESSION_COOKIE_NAME].value)
    session.cookies.set(django_settings.CSRF_COOKIE_NAME, token)
    session.headers["X-CSRFToken"] = token
    return session


def test_a_class_launching_at_once_ends_with_each_desktop_placed_with_its_console_or_refused(waitress_cloud):
    """20 launches of one image at once on a web server of 6 threads: each answer is the truth (placed: it is, with
    its console; refused: nothing runs), and those still waiting are placed or refused by the placer."""
    desks = [desktop(number) for number in range(1, CLASS_SIZE + 1)]
    session = logged_in_session()

    def launch(instance: Instance) -> tuple[str, int, dict]:
        answer = session.post(f"{waitress_cloud}/clc/api/1.0/instances/{instance.instance_id}/run/", json={},
                              timeout=60)
        return instance.instance_id, answer.status_code, answer.json()

    with ThreadPoolExecutor(CLASS_SIZE) as pool:
        answers = list(pool.map(launch, desks))
    assert {status for _, status, _ in answers} <= {202, 409}, answers
    place_until_settled()
    outcomes = {}
    for insid, status, body in answers:
        outcomes[insid] = assert_one_truth(Instance.objects.get(instance_id=insid))
        if status == 409:
            assert outcomes[insid] == "refused", f"{insid} was refused, yet placed: {body}"
        elif body["placing"] == "":
            assert outcomes[insid] == "placed" and body["console_url"], f"{insid} was told placed: {body}"
        else:
            assert body["detail"], body
    assert sorted(outcomes.values()).count("placed") == NODE_FITS
    assert ClusterInstance.objects.count() == NODE_FITS
    assert not Instance.objects.filter(state="running", console_url="").exists()


class AnswerLosingProxy:
    """Between the CLC and its CC: passes the request on, lets the CC answer, then breaks the connection instead of
    passing the answer back (what a timeout under load does)."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with client, socket.create_connection(self.target) as upstream:
                request = self._read_request(client)
                upstream.sendall(request)
                upstream.shutdown(socket.SHUT_WR)
                while upstream.recv(65536):  # the CC's whole answer, dropped
                    pass

    @staticmethod
    def _read_request(client: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            data += client.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += client.recv(65536)
        return head.replace(b"Connection: keep-alive", b"Connection: close") + b"\r\n\r\n" + body

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def cloud(live_server, cloud_at, tmp_path):
    config = cloud_at(live_server.url, data_dir=tmp_path / "host", name="aio")
    make_cloud(live_server.url, config.cluster)
    return live_server.url


@pytest.fixture
def lost_answers(cloud):
    """The CLC reaches its CC only through a proxy that loses every answer."""
    proxy = AnswerLosingProxy(cloud)
    Server.objects.filter(role="cc").update(api_url=proxy.url)
    yield proxy
    proxy.close()


def test_a_run_whose_answer_was_lost_waits_and_is_placed_when_the_placer_asks_again(api_client, cloud, lost_answers):
    insid = desktop().instance_id
    queued("nc-1")  # what earlier tests left on the node's queue
    answer = api_client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    assert answer.status_code == 202, answer.json()
    assert (answer.json()["state"], answer.json()["placing"]) == ("scheduled", "asked")
    assert "has not answered yet" in answer.json()["detail"]
    placed = ClusterInstance.objects.get(instance_id=insid)  # the CC did place it
    Server.objects.filter(role="cc").update(api_url=cloud)  # the next call's answer arrives
    place_until_settled()
    assert assert_one_truth(Instance.objects.get(instance_id=insid)) == "placed"
    assert ClusterInstance.objects.get(instance_id=insid).options == placed.options  # the same placement
    assert [command.op for command in queued("nc-1")] == ["instance/run"]  # sent to the node once


def test_the_placer_does_not_ask_again_while_the_last_ask_may_still_be_under_way(api_client, cloud, lost_answers):
    insid = desktop().instance_id
    api_client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    asked = Instance.objects.get(instance_id=insid)
    Server.objects.filter(role="cc").update(api_url=cloud)
    assert place_pending(now=asked.asked_at + timedelta(seconds=ASK_AGAIN_SECONDS - 1)) == 0
    assert Instance.objects.get(instance_id=insid).asked_at == asked.asked_at  # not asked again yet
    assert place_pending(now=asked.asked_at + timedelta(seconds=ASK_AGAIN_SECONDS + 1)) == 1


def test_a_run_whose_answer_was_lost_is_placed_by_its_clusters_status_report(api_client, cloud, lost_answers):
    insid = desktop().instance_id
    queued("nc-1")
    api_client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    relayed = note_instance_status(InsStatus(insid=insid, node="nc-1", seq=1, state="preparing"))
    StatusFolder(missed_heartbeats=3, db_touch_seconds=60).fold([relayed])
    instance = Instance.objects.get(instance_id=insid)
    assert (instance.state, instance.placing, instance.node) == ("preparing", "", "nc-1")
    assert instance.console_url == ClusterInstance.objects.get(instance_id=insid).access["console"]
    assert place_pending() == 0  # nothing left to ask


def test_a_run_no_request_placed_is_placed_by_the_placer(api_client, cloud):
    insid = desktop().instance_id
    held = [instance_service._in_request.acquire(blocking=False)  # other launches hold every in-request slot
            for _ in range(instance_service.IN_REQUEST_PLACEMENTS)]
    try:
        answer = api_client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    finally:
        for _ in filter(None, held):
            instance_service._in_request.release()
    assert answer.status_code == 202
    assert (answer.json()["placing"], answer.json()["console_url"]) == ("queued", "")
    assert answer.json()["state_text"] == "Scheduled, waiting for a cluster"
    assert not ClusterInstance.objects.exists()
    assert place_pending() == 1
    assert assert_one_truth(Instance.objects.get(instance_id=insid)) == "placed"


def test_a_queued_run_no_cluster_can_take_is_marked_failed_with_the_reasons(cloud):
    instance = desktop(vm_type="huge")
    Instance.objects.filter(pk=instance.pk).update(state="scheduled", placing="queued", runs=1)
    assert place_pending() == 1
    failed = Instance.objects.get(pk=instance.pk)
    assert (failed.state, failed.placing) == ("failed", "")
    assert f"nc-1: {NODE_FITS * TINY_MB} MB memory free, 65536 MB needed" in failed.message
    assert assert_one_truth(failed) == "refused"


def test_a_run_no_cluster_answered_for_five_minutes_is_given_up_with_the_reason(cloud):
    instance = desktop()
    Instance.objects.filter(pk=instance.pk).update(state="scheduled", placing="asked", runs=1, cluster="cluster1",
                                                   asked_at=datetime.now(tz=UTC))
    later = datetime.now(tz=UTC) + timedelta(seconds=GIVE_UP_SECONDS + 1)
    assert place_pending(now=later) == 1
    given_up = Instance.objects.get(pk=instance.pk)
    assert (given_up.state, given_up.placing) == ("failed", "")
    assert f"no cluster answered within {GIVE_UP_SECONDS} s" in given_up.message


@pytest.mark.parametrize("ended", ["stopped", "failed"])
def test_a_run_that_ended_forgets_its_console_access_and_guest_address(api_client, cloud, ended):
    insid = desktop().instance_id
    api_client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    folder = StatusFolder(missed_heartbeats=3, db_touch_seconds=60)
    folder.fold([InsStatus(insid=insid, node="nc-1", seq=1, state="running", guest_ip="10.0.2.15")])
    running = Instance.objects.get(instance_id=insid)
    assert running.console_url and running.access and running.guest_ip == "10.0.2.15"
    folder.fold([InsStatus(insid=insid, node="nc-1", seq=1, state=ended)])
    gone = Instance.objects.get(instance_id=insid)
    assert (gone.state, gone.console_url, gone.access, gone.guest_ip) == (ended, "", {}, "")
    assert api_client.get(f"/clc/api/1.0/instances/{insid}/console/").status_code == 409


def test_a_run_still_waiting_for_a_cluster_is_stopped_here_and_the_placer_leaves_it(api_client, cloud):
    instance = desktop()
    Instance.objects.filter(pk=instance.pk).update(state="scheduled", placing="queued", runs=1)
    answer = api_client.post(f"/clc/api/1.0/instances/{instance.instance_id}/stop/", {})
    assert (answer.status_code, answer.json()["state"], answer.json()["placing"]) == (202, "stopped", "")
    assert place_pending() == 0
    assert not ClusterInstance.objects.exists()


def test_a_run_asked_of_a_cluster_that_never_got_it_is_stopped_when_the_cluster_says_it_has_none(api_client, cloud):
    instance = desktop()
    Instance.objects.filter(pk=instance.pk).update(state="scheduled", placing="asked", runs=1, cluster="cluster1",
                                                   asked_at=datetime.now(tz=UTC))
    answer = api_client.post(f"/clc/api/1.0/instances/{instance.instance_id}/stop/", {})
    assert (answer.status_code, answer.json()["state"], answer.json()["placing"]) == (202, "stopped", "")
