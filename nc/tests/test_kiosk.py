"""The classroom kiosk of a PC's node controller, with this test server as its CC and CLC: it lists the local
desktops the PC's owner-group may use (asked through the CC, kept on the PC), says when it is offline and then lists
only what is on the PC, refuses what it must (ids from the browser, other machines, other sites, no kiosk mode),
and keeps the VM watcher's reports of its own runs on the PC. Pulling and running a desktop with real QEMU:
tests/integration/test_host_agent.py."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import replace

import pytest
from django.test import Client

import cc.services.image_cache as cluster_cache_module
from clc.services.images import create_image, finish_upload, start_upload
from luhyaapi.messages import InsStatus, Message, TaskStatus
from luhyaapi.transfer import TransferError, upload_file
from luhyaapi.trust import own_key
from luhyaapi.vmspec import guest_devices
from luhyadb.models import Host, Instance, Server, VMType
from nc.models import NodeInstance
from nc.services import kiosk
from nc.services.images import node_cache
from nc.tests.kiosk import (
    PC_MAC,
    PC_NAME,
    add_image,
    kiosk_client,
    make_school,
    put_in_node_cache,
    reset_kiosk,
    school_group,
)

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

UNREACHABLE = "http://127.0.0.1:9"
DESKTOPS = "/nc/kiosk/desktops/"


@pytest.fixture(autouse=True)
def _fresh_kiosk(monkeypatch):
    reset_kiosk(monkeypatch)


@pytest.fixture(autouse=True)
def _no_background_sync(request, monkeypatch):
    """The school's PC has auto_sync on (the record's default), so each answer of the CC would start pulling its
    images in the background while a test looks at the kiosk; only the tests of auto_sync (``syncing``) let it."""
    if "syncing" not in request.fixturenames:
        monkeypatch.setattr(kiosk, "sync_in_background", lambda: None)


@pytest.fixture
def syncing():
    """auto_sync left on; call it to wait for the background pass to end (none outlives its test)."""

    def wait(timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while kiosk._syncing.locked():
            assert time.monotonic() < deadline, "the auto_sync pass did not end"
            time.sleep(0.02)

    yield wait
    wait()


@pytest.fixture
def pc(live_server, cloud_at, tmp_path):
    """The node controller of the classroom PC pc-12 with the kiosk on; its CC (and the CLC) is this test server."""
    return cloud_at(live_server.url, name=PC_NAME, mac=PC_MAC, data_dir=tmp_path / "pc", host_mode=True, kiosk=True)


@pytest.fixture
def cc_unreachable(settings):
    """Cut the PC off its cluster controller."""

    def cut() -> None:
        settings.EDUCLOUD = replace(settings.EDUCLOUD, cc_url=UNREACHABLE)

    return cut


def listing(client: Client, refresh: bool = False) -> dict:
    answer = client.get(DESKTOPS + ("?refresh=1" if refresh else ""))
    assert answer.status_code == 200, answer.content
    return answer.json()


def offered(body: dict) -> list[tuple[str, str, str, bool]]:
    return [(item["instance_id"], item["name"], item["state"], item["cached"]) for item in body["desktops"]]


def cached_maths() -> tuple:
    """A school whose Maths desktop's image is in this PC's cache (the Art desktop's is not)."""
    data = b"the maths lab's disk " * 64
    image = add_image("Maths", school_group(), sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    return image, data


def test_the_kiosk_lists_the_local_desktops_the_pcs_owner_group_may_use_and_keeps_the_list_on_the_pc(pc):
    make_school()
    body = listing(kiosk_client())
    assert (body["pc"], body["online"], body["reason"]) == (PC_NAME, True, "")
    assert offered(body) == [("ins-0000a002", "Art studio", "not pulled", False),
                             ("ins-0000a001", "Maths lab", "not pulled", False)]
    kept = kiosk.read_catalogue()
    assert [desktop.instance_id for desktop in kept.desktops] == ["ins-0000a002", "ins-0000a001"]
    assert (kept.host.mac, kept.host.owner_group) == (PC_MAC, "edu.school")
    assert kiosk.catalogue_path().is_relative_to(pc.data_dir)


def test_with_the_cc_unreachable_the_kiosk_says_offline_and_lists_only_the_desktops_on_the_pc(pc, cc_unreachable):
    image, data = cached_maths()
    make_school(image)
    put_in_node_cache(image, data)
    client = kiosk_client()
    assert listing(client)["online"]

    cc_unreachable()
    body = listing(client, refresh=True)
    assert (body["online"], body["offline_enabled"]) == (False, True)
    assert "cannot be reached" in body["reason"]
    assert offered(body) == [("ins-0000a001", "Maths lab", "ready", True)]
    refused = client.post(DESKTOPS + "ins-0000a002/start/")
    assert refused.status_code == 409
    assert "never been pulled to this PC" in refused.json()["detail"]


def test_the_kiosk_keeps_its_list_across_a_restart_of_the_node_controller(pc, cc_unreachable, monkeypatch):
    image, data = cached_maths()
    make_school(image)
    put_in_node_cache(image, data)
    listing(kiosk_client())
    cc_unreachable()
    reset_kiosk(monkeypatch)  # what a restarted node controller knows: only the list it kept on the PC
    body = listing(kiosk_client())
    assert not body["online"]
    assert offered(body) == [("ins-0000a001", "Maths lab", "ready", True)]


def test_offline_a_pc_that_may_not_run_desktops_offline_lists_none_and_refuses_to_start_them(pc, cc_unreachable):
    image, data = cached_maths()
    make_school(image, offline_enabled=False)
    put_in_node_cache(image, data)
    client = kiosk_client()
    assert len(listing(client)["desktops"]) == 2
    cc_unreachable()
    body = listing(client, refresh=True)
    assert (body["online"], body["offline_enabled"], body["desktops"]) == (False, False, [])
    refused = client.post(DESKTOPS + "ins-0000a001/start/")
    assert refused.status_code == 409
    assert "may not run desktops offline" in refused.json()["detail"]


def test_when_the_cc_answers_again_the_kiosk_is_online_with_the_groups_current_desktops(pc, cc_unreachable,
                                                                                      settings):
    school = make_school()
    client = kiosk_client()
    listing(client)
    reachable = settings.EDUCLOUD.cc_url
    cc_unreachable()
    assert not listing(client, refresh=True)["online"]
    school.desktops["art"].delete()
    settings.EDUCLOUD = replace(settings.EDUCLOUD, cc_url=reachable)
    body = listing(client, refresh=True)
    assert body["online"]
    assert offered(body) == [("ins-0000a001", "Maths lab", "not pulled", False)]


@pytest.mark.parametrize("insid", ["..", "ins-0000a001;reboot", "img-0000a001", "INS-0000A001", "ins-0000a0011",
                                   "ins-0000a00%20", "ins-0000a00g"])
def test_a_malformed_desktop_id_from_the_browser_is_a_400_and_nothing_runs(pc, insid):
    make_school()
    client = kiosk_client()
    listing(client)
    for action in ("start", "stop"):
        refused = client.post(f"{DESKTOPS}{insid}/{action}/")
        assert refused.status_code == 400, (action, refused.content)
        assert "insid" in refused.json()
    assert not NodeInstance.objects.exists()
    assert kiosk._activities == {}


@pytest.mark.parametrize("which", ["remote", "other"])
def test_a_desktop_the_pc_does_not_offer_is_a_404_to_start_and_to_stop(pc, which):
    school = make_school()
    client = kiosk_client()
    listing(client)
    insid = school.desktops[which].instance_id
    assert client.post(f"{DESKTOPS}{insid}/start/").status_code == 404
    assert client.post(f"{DESKTOPS}{insid}/stop/").status_code == 404
    assert not NodeInstance.objects.exists()


def test_the_kiosk_serves_only_the_pc_it_runs_on(pc):
    make_school()
    from_the_lan = Client(HTTP_HOST="10.0.9.12:8000", REMOTE_ADDR="10.0.9.50")
    for path in ("/nc/kiosk/", DESKTOPS):
        assert from_the_lan.get(path).status_code == 403
    assert from_the_lan.post(DESKTOPS + "ins-0000a001/start/").status_code == 403
    # A page of another site whose name was made to point at 127.0.0.1 (DNS rebinding) reaches the PC's loopback.
    rebound = Client(HTTP_HOST="kiosk.evil.example:8000")
    assert rebound.get(DESKTOPS).status_code == 403
    assert rebound.post(DESKTOPS + "ins-0000a001/start/").status_code == 403
    assert not NodeInstance.objects.exists()
    for at_the_pc in (kiosk_client(), Client(HTTP_HOST="localhost:8000"),
                      Client(HTTP_HOST="[::1]:8000", REMOTE_ADDR="::1")):
        assert at_the_pc.get(DESKTOPS).status_code == 200


def test_without_kiosk_mode_the_node_controller_serves_no_kiosk(pc, settings):
    make_school()
    settings.EDUCLOUD = replace(settings.EDUCLOUD, kiosk=False)
    client = kiosk_client()
    assert client.get("/nc/kiosk/").status_code == 404
    assert client.get(DESKTOPS).status_code == 404
    assert client.post(DESKTOPS + "ins-0000a001/start/").status_code == 404
    assert not kiosk.catalogue_path().exists()


KIOSK_URLS = ("/nc/kiosk/", DESKTOPS, DESKTOPS + "?refresh=1", DESKTOPS + "ins-0000a001/start/",
              DESKTOPS + "ins-0000a001/stop/", DESKTOPS + "not-an-id/start/")


def test_without_kiosk_mode_every_kiosk_url_is_a_404_like_any_unknown_page_whoever_asks_and_however(pc, settings):
    make_school()
    settings.EDUCLOUD = replace(settings.EDUCLOUD, kiosk=False)
    browsers = {"a browser at the PC": kiosk_client(enforce_csrf_checks=True),
                "a browser on the LAN": Client(HTTP_HOST="10.0.9.12:8000", REMOTE_ADDR="10.0.9.50",
                                               enforce_csrf_checks=True),
                "a rebound site": Client(HTTP_HOST="kiosk.evil.example:8000", enforce_csrf_checks=True)}
    for who, browser in browsers.items():
        unknown = browser.get("/nc/no-such-page/")
        for path in KIOSK_URLS:
            for method in ("get", "head", "post", "put", "patch", "delete", "options"):
                response = getattr(browser, method)(path)
                assert response.status_code == 404, f"{who}: {method.upper()} {path} -> {response.status_code}"
                assert "csrftoken" not in response.cookies, f"{who}: {method.upper()} {path} set a CSRF cookie"
                if method != "head":  # the same page as for a URL that never existed: nothing says there is a kiosk
                    assert (response.content.replace(path.split("?")[0].encode(), b"")
                            == unknown.content.replace(b"/nc/no-such-page/", b"")), f"{who}: {method.upper()} {path}"
    assert not NodeInstance.objects.exists() and kiosk._activities == {}


def test_starting_or_stopping_needs_the_csrf_token_of_the_kiosk_page(pc):
    make_school()
    browser = kiosk_client(enforce_csrf_checks=True)
    assert browser.post(DESKTOPS + "ins-0000a001/start/").status_code == 403  # a form of another site
    assert not NodeInstance.objects.exists() and kiosk._activities == {}
    page = browser.get("/nc/kiosk/")
    assert page.status_code == 200
    token = page.context["kiosk"]["csrf"]
    stopped = browser.post(DESKTOPS + "ins-0000a001/stop/", HTTP_X_CSRFTOKEN=token)
    assert stopped.status_code == 404  # past the CSRF check: the desktop does not run
    assert "does not run on this PC" in stopped.json()["detail"]


def test_the_kiosk_page_loads_its_script_and_knows_where_to_ask(pc):
    page = kiosk_client().get("/nc/kiosk/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "nc/kiosk.js" in html and PC_NAME in html
    start = html.index('id="kiosk-config"')
    config = json.loads(html[html.index(">", start) + 1:html.index("</script>", start)])
    assert config["desktops"] == DESKTOPS and config["csrf"]


class Upstream:
    """What a reporter passed up (the heartbeat's place)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.nudges = 0

    def publish(self, message: Message) -> None:
        self.messages.append(message)

    def report_now(self, last_command: str = "") -> None:
        self.nudges += 1


def test_the_watchers_reports_of_the_kiosks_own_runs_stay_on_the_pc_and_the_others_go_up(pc):
    make_school()
    listing(kiosk_client())
    upstream = Upstream()
    reports = kiosk.LocalRunReports(upstream)
    reports.publish(InsStatus(insid="ins-0000a001", node=PC_NAME, state="stopped"))
    reports.publish(TaskStatus(tid="kiosk:ins-0000a001", phase="editing", state="stopped", progress=100))
    placed = InsStatus(insid="ins-0000b001", node=PC_NAME, seq=3, state="stopped")
    task = TaskStatus(tid="img-0000b001:img-0000b001:ins-0000b001", phase="editing", state="stopped", progress=100)
    reports.publish(placed)
    reports.publish(task)
    reports.report_now()
    assert (upstream.messages, upstream.nudges) == ([placed, task], 1)


def test_a_desktop_runs_on_the_pc_with_the_devices_of_the_one_guest_rule():
    for os_type in ("linux", "windows", "other"):
        desktop = kiosk.Desktop.model_validate({
            "instance_id": "ins-0000a001", "name": "Maths lab", "os_type": os_type,
            "image": {"image_id": "img-0000a001", "version": 1, "sha256": "11" * 32, "size": 1024},
            "vm_type": {"name": "tiny", "cpus": 1, "memory_mb": 256}, "services": [80]})
        options = kiosk.runtime_options(desktop)
        assert (options.disk_type, options.nics[0].model) == guest_devices(os_type)


# auto_sync: the offered desktops' images pulled in the background after each answer of the CC


def walrus_image(config, tmp_path, data: bytes):
    """An image of edu.school whose version 1 is ``data``, stored by walrus (this test server)."""
    Server.objects.create(name="test", role="walrus", ip="127.0.0.1", cluster=config.cluster,
                          api_url=config.walrus_url, state="online")
    disk = tmp_path / "maths.img"
    disk.write_bytes(data)
    image = create_image(name="Maths", owner_group=school_group())
    upload = start_upload(image, len(data))
    upload_file(config.walrus_url, own_key(), disk, image.image_id, upload_id=upload["upload_id"])
    finish_upload(image, upload["upload_id"])
    return image


def test_with_auto_sync_the_pc_pulls_its_desktops_images_after_the_list_and_runs_them_offline(
        pc, syncing, tmp_path, monkeypatch, cc_unreachable):
    monkeypatch.setattr(cluster_cache_module, "_caches", {})  # the cluster cache of this test's data dir
    data = b"the maths lab's disk " * 4096
    image = walrus_image(pc, tmp_path, data)
    make_school(image)  # the Art studio's image has no file in walrus: the chain refuses it, and the pass goes on
    client = kiosk_client()
    assert offered(listing(client)) == [("ins-0000a002", "Art studio", "not pulled", False),
                                        ("ins-0000a001", "Maths lab", "not pulled", False)]
    syncing()
    assert node_cache().lookup(image.image_id, 1, hashlib.sha256(data).hexdigest()) is not None
    assert offered(listing(client)) == [("ins-0000a002", "Art studio", "not pulled", False),
                                        ("ins-0000a001", "Maths lab", "ready", True)]
    cc_unreachable()
    assert offered(listing(client, refresh=True)) == [("ins-0000a001", "Maths lab", "ready", True)]


class FakeChain:
    """Stands in for the chain walrus -> CC -> PC in the kiosk's background pulls: each pull lands in the PC's
    cache after ``chunks`` progress calls, and it records which images were pulled and how many at once."""

    def __init__(self, chunks: int = 1, pause: float = 0.0) -> None:
        self.chunks, self.pause = chunks, pause
        self.pulled: list[str] = []
        self.failures: dict[str, TransferError] = {}
        self.running = 0
        self.most_at_once = 0
        self.started = threading.Event()
        self.lock = threading.Lock()

    def fetch(self, image_id, version, sha256, size, progress=None):
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            self.started.set()
            if image_id in self.failures:
                raise self.failures[image_id]
            for chunk in range(1, self.chunks + 1):
                time.sleep(self.pause)
                progress(chunk * size // self.chunks, size)
            cache = node_cache()
            path = cache.path(image_id, version)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x" * size)
            self.pulled.append(image_id)
            return cache.adopt(image_id, version, sha256)
        finally:
            with self.lock:
                self.running -= 1


def test_auto_sync_pulls_one_image_at_a_time_skips_those_on_the_pc_and_evicts_nothing(pc, syncing, monkeypatch,
                                                                                      settings):
    chain = FakeChain(chunks=3, pause=0.01)
    monkeypatch.setattr(kiosk, "fetch_image", chain.fetch)
    image, data = cached_maths()
    school = make_school(image)
    put_in_node_cache(image, data)
    music = [add_image(f"Music {number}", school.group, sha256=f"{number + 4:02x}" * 32, size=1000)
             for number in range(3)]
    for number, music_image in enumerate(music):
        Instance.objects.create(instance_id=f"ins-0000b00{number}", name=f"Music room {number}", kind="lvd",
                                image=music_image, vm_type=VMType.objects.get(name="tiny"), owner_group=school.group)
    # Room for the Art studio's 2048 bytes and two of the music rooms, not the third (nor the Maths lab's twice).
    settings.EDUCLOUD = replace(settings.EDUCLOUD, image_cache_bytes=len(data) + 2048 + 2000 + 999)
    listing(kiosk_client())
    syncing()
    art = school.desktops["art"].image.image_id
    assert chain.pulled == [art, music[0].image_id, music[1].image_id]
    assert chain.most_at_once == 1
    assert node_cache().path(image.image_id, 1).exists()  # nothing was evicted to make room

    listing(kiosk_client(), refresh=True)  # the next pass has nothing it may pull
    syncing()
    assert len(chain.pulled) == 3


def test_without_auto_sync_nothing_is_pulled_in_the_background(pc, syncing, monkeypatch):
    chain = FakeChain()
    monkeypatch.setattr(kiosk, "fetch_image", chain.fetch)
    make_school()
    Host.objects.filter(mac=PC_MAC).update(auto_sync=False)
    assert listing(kiosk_client())["online"]
    syncing()
    assert kiosk.sync_images() == [] and chain.pulled == []


def test_auto_sync_skips_an_image_the_chain_refuses_and_stops_when_the_cc_does_not_answer(pc, monkeypatch):
    chain = FakeChain()
    monkeypatch.setattr(kiosk, "fetch_image", chain.fetch)
    school = make_school()
    listing(kiosk_client())  # the kept list (the background pass is off in this test; it runs here, in order)
    art, maths = school.desktops["art"].image.image_id, school.desktops["maths"].image.image_id
    chain.failures[art] = TransferError("walrus has no such version", 404)
    assert kiosk.sync_images() == [f"{maths}/1"]
    node_cache().remove(maths, 1)
    chain.failures[art] = TransferError("the cluster controller cannot be reached", 0)
    assert kiosk.sync_images() == []
    assert chain.pulled == [maths]


def test_a_desktop_started_at_the_pc_goes_first_and_the_background_pull_of_its_image_stops(pc, syncing,
                                                                                           monkeypatch):
    chain = FakeChain(chunks=200, pause=0.01)
    monkeypatch.setattr(kiosk, "fetch_image", chain.fetch)
    runs = []

    def run_instance(command, reporter):
        runs.append((command.paras["insid"], chain.running))  # the background pull has let go of the image

    monkeypatch.setattr(kiosk.instances, "run_instance", run_instance)
    make_school()
    client = kiosk_client()
    listing(client)  # the background pass begins with the Art studio's image
    assert chain.started.wait(10)
    started = client.post(DESKTOPS + "ins-0000a002/start/")
    assert started.status_code == 202, started.content
    syncing()
    join_kiosk_threads()
    assert runs == [("ins-0000a002", 0)]
    assert chain.pulled == []  # the pass stopped; the Maths lab waits for the next list
    assert kiosk._is_cached(kiosk._offered("ins-0000a001")[1]) is False


def test_a_desktop_stopped_while_waiting_for_the_background_pull_of_its_image_never_runs(pc, monkeypatch):
    runs, stops = [], []
    monkeypatch.setattr(kiosk.instances, "run_instance", lambda command, reporter: runs.append(command))
    monkeypatch.setattr(kiosk.instances, "stop_instance", lambda command, reporter: stops.append(command))
    make_school()
    client = kiosk_client()
    listing(client)
    with kiosk._image_lock(kiosk._offered("ins-0000a002")[1].image):  # as a background pull of the image holds it
        assert client.post(DESKTOPS + "ins-0000a002/start/").status_code == 202
        assert client.post(DESKTOPS + "ins-0000a002/stop/").status_code == 202
    join_kiosk_threads()
    assert (runs, [command.op for command in stops]) == ([], ["instance/stop"])


def join_kiosk_threads(timeout: float = 10.0) -> None:
    """Wait for the kiosk's background starts and stops to end."""
    for thread in threading.enumerate():
        if thread.name.startswith("kiosk-instance/"):
            thread.join(timeout)
            assert not thread.is_alive(), f"{thread.name} did not end"
