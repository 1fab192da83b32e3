"""The console's metric charts in a real browser (Debian's Chromium), on a host running the CLC and the watch role:
real points stored with ``watch.services.store.store()`` in the host's database, loaded by the page's own script
(clc/static/clc/charts.js) through the CLC's ``/clc/api/1.0/metrics/statistics/``, which asks the watch role. The
instance page draws CPU, memory, disk and network with axes in each metric's unit, a tooltip of the nearest point,
the last day on demand, a new point within a sample period, a width that follows the window, and "no data yet" for
an instance without points; the Monitoring page draws a classroom PC's host charts. The instance page's charts are
saved as tests/artifacts/browser/<test name>/NN-instance-charts.png.

It starts its own host (no QEMU, no all-in-one): the package's ``host`` fixture is not used."""

from __future__ import annotations

import re
import shutil
import time

import pytest
from playwright.sync_api import expect

from luhyaapi.client import RemoteError
from tests.e2e.browser.conftest import CHROMIUM
from tests.e2e.browser.pages import SHOTS, login, shot
from tests.services import ADMIN_PASSWORD, ADMIN_USER, ConsoleClient, RoleProcess

pytestmark = [pytest.mark.e2e]

INSTANCE = "ins-0000c0de"
QUIET = "ins-0000e111"  # an instance with no points at all
# A classroom PC whose host metrics the test stores (the host itself stores its own real ones under its name).
PC = "pc-charted"
SAMPLE_SECONDS = 10  # the smallest sample period the settings take: the live refresh shows within the test
MIB = 2**20

RECORDS = f"""
from luhyadb.models import Host, Image, Instance, OwnerGroup, VMType
root = OwnerGroup.objects.get(path="edu")
Host.objects.create(name="{PC}", mac="52:54:00:00:c0:01", ip="10.0.9.21", cluster="cluster1", owner_group=root)
image = Image.objects.create(image_id="img-0000c0de", name="Charted image", owner_group=root, current_version=1)
tiny = VMType.objects.create(name="chart-tiny", cpus=1, memory_mb=512, disk_gb=1)
for insid, name in (("{INSTANCE}", "Charted desktop"), ("{QUIET}", "Quiet desktop")):
    Instance.objects.create(instance_id=insid, name=name, kind="rvd", image=image, vm_type=tiny, owner_group=root,
                            mac="52:54:00:00:c0:" + insid[-2:])
"""

# The last hour of an instance and of the host, a point a minute, stored as the watch's consumer stores a batch.
POINTS = """
import math, time
from luhyaapi.metrics import MetricSample
from watch.services.store import store
now = int(time.time()) // 60 * 60
instance = {{"InstanceId": "{instance}", "NodeName": "nc-1", "Cluster": "cluster1", "OwnerGroup": "edu"}}
host = {{"HostName": "{host}", "Cluster": "cluster1", "Role": "nc"}}
samples = []
for minute in range(1, 61):
    at = now - minute * 60
    wave = math.sin(minute / 6)
    for name, value, unit in (("CPUUtilization", 50 + 30 * wave, "Percent"),
                              ("MemoryUsed", (600 + 40 * wave) * {mib}, "Bytes"),
                              ("DiskReadBytes", 6 * {mib} * (1.5 + wave), "Bytes"),
                              ("DiskWriteBytes", 2 * {mib}, "Bytes"), ("NetworkIn", 30 * {mib}, "Bytes"),
                              ("NetworkOut", 3 * {mib} * (1 + wave * wave), "Bytes")):
        samples.append(MetricSample(namespace="eduCloud/Instance", name=name, dimensions=instance, timestamp=at,
                                    value=value, unit=unit))
    for name, value, unit in (("CPUUtilization", 20 + 5 * wave, "Percent"), ("MemoryUsed", 3 * 1024 * {mib}, "Bytes"),
                              ("MemoryTotal", 8 * 1024 * {mib}, "Bytes"), ("LoadAverage", 0.7 + 0.3 * wave, "None"),
                              ("NetworkIn", 12 * {mib}, "Bytes"), ("NetworkOut", {mib}, "Bytes"),
                              ("DiskUsed", 40 * 1024 * {mib}, "Bytes"), ("DiskTotal", 100 * 1024 * {mib}, "Bytes")):
        samples.append(MetricSample(namespace="eduCloud/Host", name=name, dimensions=host, timestamp=at, value=value,
                                    unit=unit))
print(store(samples))
"""

# One new CPU point in the current minute (no other point shares its bucket): what the live refresh must show.
NEW_POINT = f"""
import time
from luhyaapi.metrics import MetricSample
from watch.services.store import store
print(store([MetricSample(namespace="eduCloud/Instance", name="CPUUtilization", dimensions={{"InstanceId": "{INSTANCE}",
    "NodeName": "nc-1", "Cluster": "cluster1", "OwnerGroup": "edu"}}, timestamp=int(time.time()) // 60 * 60 + 1,
    value=99.0, unit="Percent")]))
"""


def _statistics(name: str, dimensions: str) -> str:
    end = int(time.time())
    return (f"/clc/api/1.0/metrics/statistics/?namespace=eduCloud/Instance&name={name}&dimensions={dimensions}"
            f"&start={end - 3600}&end={end}&period=60&statistics=Average,Maximum")


def _wait_for_points(api: ConsoleClient, timeout: float = 60) -> None:
    """Until the CLC's metrics API answers with the stored points (503 until the watch host is online); else fail
    with its last answer."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            if api.get(_statistics("CPUUtilization", f"InstanceId={INSTANCE}"))["datapoints"]:
                return
        except RemoteError as exc:
            last = exc
        time.sleep(0.5)
    pytest.fail(f"the CLC's metrics API did not answer with the stored points within {timeout:.0f} s: {last}")


@pytest.fixture(scope="module")
def charted(tmp_path_factory):
    """A host with the CLC and the watch role, its records and an hour of points; ``(host, admin's API client)``."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is not installed; the test command (tests/run.sh) installs Debian's chromium")
    host = RoleProcess(tmp_path_factory.mktemp("charts"), "mon", "clc,watch",
                       {"cloud": {"heartbeat_seconds": "1"}, "watch": {"sample_seconds": str(SAMPLE_SECONDS)}})
    host.start().wait_listening()
    try:
        host.manage("shell", "-c", RECORDS)
        stored = host.manage("shell", "-c", POINTS.format(instance=INSTANCE, host=PC, mib=MIB))
        assert int(stored.split()[-1]) == 60 * 14, stored
        api = ConsoleClient(host.url)
        _wait_for_points(api)
        yield host, api
    finally:
        host.stop()
        print(f"----- mon log -----\n{host.tail(60)}")


@pytest.fixture
def admin(request, charted, chromium):
    """A logged-in administrator's page at the host (the package's Chromium, a context of its own), screenshots in
    tests/artifacts/browser/<test name>/."""
    host, _api = charted
    folder = SHOTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    context = chromium.new_context(base_url=host.url, viewport={"width": 1280, "height": 900})
    try:
        context.set_default_timeout(30_000)
        page = context.new_page()
        page.educloud_shots = {"folder": folder, "taken": 0}
        login(page, ADMIN_USER, ADMIN_PASSWORD)
        yield page
    finally:
        context.close()


def _chart(page, name: str):
    return page.locator(f'figure.metric-chart[data-chart="{name}"]')


def _axis_labels(chart) -> list[str]:
    return chart.locator(".chart-axes text").all_text_contents()


def test_the_instance_page_charts_its_hour_in_each_metrics_unit_with_a_tooltip(admin):
    page = admin
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"/clc/instances/{INSTANCE}/")
    for name in ("cpu", "memory", "disk", "network"):
        expect(_chart(page, name)).to_have_attribute("data-state", "data")
        expect(_chart(page, name).locator("path.line")).to_have_count(2 if name in ("disk", "network") else 1)
    cpu, memory, disk, network = (_chart(page, name) for name in ("cpu", "memory", "disk", "network"))
    assert {"0 %", "50 %", "100 %"} <= set(_axis_labels(cpu)), _axis_labels(cpu)
    assert any(label.endswith(" MiB") for label in _axis_labels(memory)), _axis_labels(memory)
    # 6 MiB x (1.5 + sin) per 10 s sample: up to 1.5 MiB/s, shown as a rate
    assert any(label.endswith("/s") for label in _axis_labels(disk)), _axis_labels(disk)
    assert any(label.endswith("MiB/s") for label in _axis_labels(network)), _axis_labels(network)
    times = [label for label in _axis_labels(cpu) if re.fullmatch(r"\d{1,2}:\d{2}( [AP]M)?", label)]
    assert len(times) >= 4, _axis_labels(cpu)

    # Accessible: a summary of the latest points and a visually hidden table of them.
    expect(cpu.locator("svg")).to_have_attribute("aria-label", re.compile(r"CPU over the last hour: CPU used latest "
                                                                          r"[\d.]+ %, highest [\d.]+ %"))
    expect(cpu.locator("table.visually-hidden tbody tr")).to_have_count(10)
    expect(network.locator("table.visually-hidden thead")).to_contain_text("In")

    # The tooltip: the nearest point to the pointer, each series' value there.
    disk.scroll_into_view_if_needed()
    box = disk.locator("svg").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
    tip = disk.locator(".chart-tip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text(re.compile(r"Read: [\d.,]+ (KiB|MiB)/s"))
    expect(tip).to_contain_text(re.compile(r"Written: 205 KiB/s"))  # 2 MiB per 10 s sample: 204.8 KiB/s
    expect(disk.locator("line.guide")).to_have_attribute("visibility", "visible")
    section = page.locator("section.metric-charts")
    section.scroll_into_view_if_needed()
    shots = page.educloud_shots
    shots["taken"] += 1
    section.screenshot(path=str(shots["folder"] / f"{shots['taken']:02d}-instance-charts.png"))
    page.mouse.move(0, 0)
    expect(tip).to_be_hidden()

    # Only the CLC's own server was asked for anything (an offline classroom has nothing else).
    origin = page.url.split("/clc/")[0]
    assert all(url.startswith(origin) for url in requests), [url for url in requests if not url.startswith(origin)]
    assert any("/clc/api/1.0/metrics/statistics/" in url and "period=60" in url for url in requests)


def test_the_last_day_a_live_point_and_the_window_width_are_followed(admin, charted):
    host, _api = charted
    page = admin
    page.goto(f"/clc/instances/{INSTANCE}/")
    cpu = _chart(page, "cpu")
    expect(cpu).to_have_attribute("data-state", "data")

    with page.expect_request(lambda request: "period=300" in request.url and "CPUUtilization" in request.url):
        page.get_by_role("button", name="Last day").click()
    expect(page.get_by_role("button", name="Last day")).to_have_attribute("aria-pressed", "true")
    expect(cpu.locator("svg")).to_have_attribute("aria-label", re.compile("over the last day"))
    page.get_by_role("button", name="Last hour").click()
    expect(cpu.locator("svg")).to_have_attribute("aria-label", re.compile("over the last hour"))

    # A point stored now shows within a sample period, without reloading the page.
    host.manage("shell", "-c", NEW_POINT)
    expect(cpu.locator("svg")).to_have_attribute("aria-label", re.compile(r"latest 99 %"),
                                                 timeout=(SAMPLE_SECONDS + 15) * 1000)

    # A narrower window: the charts redraw to their new width (not scaled: their labels keep their size).
    wide = cpu.locator("svg").get_attribute("width")
    page.set_viewport_size({"width": 480, "height": 900})
    expect(cpu.locator("svg")).not_to_have_attribute("width", wide)
    narrow = int(cpu.locator("svg").get_attribute("width"))
    assert narrow < int(wide), (narrow, wide)
    assert narrow == cpu.locator(".chart-area").evaluate("element => element.clientWidth"), narrow
    shot(page, "narrow")


def test_an_instance_without_points_says_no_data_yet(admin):
    page = admin
    page.goto(f"/clc/instances/{QUIET}/")
    for name in ("cpu", "memory", "disk", "network"):
        expect(_chart(page, name)).to_have_attribute("data-state", "empty")
        expect(_chart(page, name).locator(".chart-note")).to_have_text("no data yet")
    expect(_chart(page, "cpu").locator("path.line")).to_have_count(0)
    shot(page, "no-data")


def test_the_monitoring_page_charts_a_host_and_loads_the_alarms(admin):
    page = admin
    page.goto("/clc/")
    page.get_by_role("link", name="Monitoring").click()
    expect(page).to_have_url(re.compile(r"/clc/monitoring/$"))
    page.locator("#host").select_option(PC)
    page.get_by_role("button", name="Show").click()
    for name in ("cpu", "memory", "load", "network", "disk"):
        expect(_chart(page, name)).to_have_attribute("data-state", "data")
    assert {"0 %", "100 %"} <= set(_axis_labels(_chart(page, "cpu")))
    memory = _axis_labels(_chart(page, "memory"))
    assert any(label.endswith(" GiB") for label in memory), memory
    expect(_chart(page, "memory").locator("path.line")).to_have_count(2)
    # The alarms table leaves its loading row: alarms (or "No alarm yet"), or the API's refusal named.
    expect(page.locator("#alarms tbody")).not_to_contain_text("Loading the alarms")
    shot(page, "host-charts")


EVALUATE = """
import time
from watch.services.alarms import evaluate_alarms
print(evaluate_alarms(time.time()))
"""


def test_the_monitoring_page_shows_an_alarm_its_state_its_instance_and_its_history(admin, charted):
    host, api = charted
    page = admin
    api.post("/clc/api/1.0/alarms/", {
        "name": "busy-desktop", "namespace": "eduCloud/Instance", "metric": "CPUUtilization",
        "dimensions": {"InstanceId": INSTANCE}, "statistic": "Average", "comparison": "GreaterThanThreshold",
        "threshold": 10, "period": 300, "evaluation_periods": 1, "actions": []})
    host.manage("shell", "-c", EVALUATE)  # as the watch's periodic job does each minute: CPU 20-80 % > 10 %
    assert api.get("/clc/api/1.0/alarms/busy-desktop/")["state"] == "ALARM"

    page.goto("/clc/monitoring/")
    row = page.locator('#alarms tbody tr[data-alarm="busy-desktop"]')
    expect(row.locator(".state.alarm-ALARM")).to_have_text("ALARM")
    expect(row).to_contain_text("Average of CPUUtilization > 10 for 1 period of 300 s")
    page.locator("#alarm-state").select_option("OK")
    expect(row).to_have_count(0)
    expect(page.locator("#alarms tbody")).to_contain_text("No alarm in this state.")
    page.locator("#alarm-state").select_option("ALARM")
    row.get_by_role("button", name="Show").click()
    history = page.locator("#alarms tr.alarm-detail table.alarm-history")
    expect(history.locator(".state.alarm-ALARM")).to_have_count(1)
    expect(history).to_contain_text("INSUFFICIENT_DATA")
    shot(page, "alarm-history")
    row.get_by_role("link", name=INSTANCE).click()
    expect(page).to_have_url(re.compile(f"/clc/instances/{INSTANCE}/$"))
