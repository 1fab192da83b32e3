"""Monitoring end to end on one host running every role (CLC, walrus, CC, NC with real QEMU, watch), samples every
10 s, driven through the CLC's API only, as the console's charts and Monitoring page read it: a test VM's guest
keeps its CPU busy and writes to its disk, and within two sample periods its CPU and disk-write metrics rise;
monitoring switched off while it runs stops its samples until switched on again; an alarm on its CPU with the stop
action stops it; once stopped it sends no more points. And the guest watchdog: a
guest that powers itself off raises its built-in alarm, the CLC says what happened on the instance, and an
instance defined to be restarted runs again."""

from __future__ import annotations

import time

import pytest
import requests

from tests.services import ConsoleClient, allinone_host, instance_record, wait_for

pytestmark = [pytest.mark.e2e]

SAMPLE_SECONDS = 10
MIB = 2**20


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    # Alarms evaluated every sample period: a minute's alarm acts within seconds of the minute's end, not up to a
    # minute later.
    with allinone_host(tmp_path_factory.mktemp("watch"), ports=20, stop_timeout=20,
                       watch={"sample_seconds": str(SAMPLE_SECONDS),
                              "evaluate_seconds": str(SAMPLE_SECONDS)}) as (aio, image):
        yield aio, image


def _online(client: ConsoleClient) -> bool:
    services = {(s["role"], s["state"]) for s in client.get("/clc/api/1.0/status/")["services"]}
    return services >= {("nc", "online"), ("walrus", "online"), ("cc", "online"), ("watch", "online")}


@pytest.fixture(scope="module")
def image_id(host) -> str:
    aio, image = host
    client = ConsoleClient(aio.url)
    wait_for("every role online", lambda: _online(client), 90)
    return client.upload_image(image, "Watch test VM")["image_id"]


def _state(client: ConsoleClient, insid: str) -> str:
    return instance_record(client, insid)["state"]


def _running(client: ConsoleClient, image_id: str, name: str, **fields) -> tuple[str, str]:
    """A new instance of the test image, run until its page answers: its id and its page's URL."""
    instance = client.post("/clc/api/1.0/instances/", {
        "name": name, "kind": "vs", "image": image_id, "vm_type": "tiny", "owner_group": "edu", "services": [80]}
        | fields)
    insid = instance["instance_id"]
    client.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    wait_for(f"{insid} running", lambda: _state(client, insid) == "running", 300)
    page = instance_record(client, insid)["access"]["http"]
    wait_for(f"{insid}'s page", lambda: _answers(page), 120)
    return insid, page


def _answers(page: str) -> bool:
    try:
        return requests.get(page, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _guest(page: str, cgi: str, **params) -> requests.Response:
    answer = requests.get(f"{page.rstrip('/')}/cgi-bin/{cgi}", params=params, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer


def _datapoints(client: ConsoleClient, insid: str, name: str, statistic: str, since: float) -> list[dict]:
    """The instance's ``name`` per minute since ``since`` (epoch seconds), as the instance page's chart reads it."""
    answer = client.get(f"/clc/api/1.0/metrics/statistics/?namespace=eduCloud/Instance&name={name}"
                        f"&dimensions=InstanceId={insid}&start={int(since) // 60 * 60}&end={int(time.time()) + 120}"
                        f"&period=60&statistics={statistic}")
    return answer["datapoints"]


def _peak(client: ConsoleClient, insid: str, name: str, statistic: str, since: float) -> float:
    return max((point[statistic] for point in _datapoints(client, insid, name, statistic, since)), default=0.0)


def _samples(client: ConsoleClient, insid: str, since: float) -> int:
    return int(sum(point["SampleCount"] for point in _datapoints(client, insid, "Alive", "SampleCount", since)))


def test_a_busy_guest_shows_in_its_metrics_an_alarm_stops_it_and_a_stopped_instance_sends_nothing(host, image_id):
    client = ConsoleClient(host[0].url)
    insid, page = _running(client, image_id, "busy guest")
    since = time.time() - 60

    wait_for("the first samples", lambda: _samples(client, insid, since) > 0, 4 * SAMPLE_SECONDS)
    loaded = time.time()
    _guest(page, "load", seconds="40", mb="8")
    # Within two sample periods of the load (and the minute's rollup that holds them), as the issue asks.
    wait_for("CPU above 40 %", lambda: _peak(client, insid, "CPUUtilization", "Maximum", since) > 40,
             2 * SAMPLE_SECONDS + 15)
    wait_for("8 MiB written", lambda: sum(p["Sum"] for p in _datapoints(client, insid, "DiskWriteBytes", "Sum", since))
             >= 8 * MIB, 2 * SAMPLE_SECONDS + 15)
    assert sum(p["Sum"] for p in _datapoints(client, insid, "DiskWriteOps", "Sum", since)) > 0, "QEMU counts them"
    assert time.time() - loaded < 2 * SAMPLE_SECONDS + 20
    assert _peak(client, insid, "Alive", "Minimum", since) == 1

    # Monitoring switched off while it runs: its node is told at once and sends nothing more until it is on again.
    client.request("PATCH", f"/clc/api/1.0/instances/{insid}/", {"monitoring": False})
    time.sleep(SAMPLE_SECONDS + 2)
    counted = _samples(client, insid, since)
    time.sleep(2 * SAMPLE_SECONDS)
    assert _samples(client, insid, since) == counted, "monitoring is off, yet samples still come"
    client.request("PATCH", f"/clc/api/1.0/instances/{insid}/", {"monitoring": True})
    wait_for("samples again", lambda: _samples(client, insid, since) > counted, 3 * SAMPLE_SECONDS)

    # An alarm with the stop action: the watch evaluates it every 10 s, the CLC stops the instance.
    alarm = client.post("/clc/api/1.0/alarms/", {
        "name": f"busy-{insid}", "namespace": "eduCloud/Instance", "metric": "CPUUtilization",
        "dimensions": {"InstanceId": insid}, "statistic": "Maximum", "comparison": "GreaterThanThreshold",
        "threshold": 30, "period": 60, "evaluation_periods": 1, "actions": ["stop"]})
    assert alarm["state"] in ("INSUFFICIENT_DATA", "OK", "ALARM"), alarm
    _guest(page, "load", seconds="240", mb="0")
    wait_for(f"{insid} stopped by its alarm", lambda: _state(client, insid) == "stopped", 240)
    history = client.get(f"/clc/api/1.0/alarms/busy-{insid}/history/")["results"]
    assert any(entry["new_state"] == "ALARM" and entry["datapoints"] for entry in history), history

    # Points in flight when it stopped have arrived after a period; then nothing more comes.
    time.sleep(SAMPLE_SECONDS + 2)
    counted = _samples(client, insid, since)
    time.sleep(2 * SAMPLE_SECONDS)
    assert _samples(client, insid, since) == counted, "a stopped instance still sends samples"
    client.request("DELETE", f"/clc/api/1.0/instances/{insid}/")


def test_a_guest_that_powers_itself_off_raises_the_watchdog_and_is_started_again(host, image_id):
    client = ConsoleClient(host[0].url)
    insid, page = _running(client, image_id, "watched guest", restart_when_dead=True)
    first_boot = instance_record(client, insid)
    _guest(page, "poweroff")

    def watchdog_fired() -> bool:
        alarms = client.get("/clc/api/1.0/alarms/?page_size=100")["results"]
        return any(alarm["name"] == f"watchdog-{insid}" and alarm["state"] == "ALARM" for alarm in alarms)

    wait_for("the watchdog's alarm", watchdog_fired, 240)
    notes = client.get("/clc/api/1.0/notifications/")["results"]
    assert any(note["instance_id"] == insid for note in notes), notes
    wait_for(f"{insid} running again", lambda: _state(client, insid) == "running"
             and instance_record(client, insid) != first_boot, 300)
    page_again = instance_record(client, insid)["access"]["http"]
    wait_for(f"{insid}'s page again", lambda: _answers(page_again), 120)
    client.post(f"/clc/api/1.0/instances/{insid}/stop/", {})
    wait_for(f"{insid} stopped", lambda: _state(client, insid) == "stopped", 120)
    client.request("DELETE", f"/clc/api/1.0/instances/{insid}/")
