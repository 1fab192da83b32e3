"""``host/poweroff`` on the node: it reports ``stopping`` first, then runs the configured argv once; a stale or
repeated command runs nothing. The configured argv is always a harmless one here (it writes a marker file)."""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import pytest
from django.conf import settings as django_settings

from daemons.heartbeat import HeartbeatPublisher
from luhyaapi.bus import InProcessBus
from luhyaapi.commands import send_command
from luhyaapi.config import ConfigError, load_config
from luhyaapi.messages import Command, NodeStatus, decode
from luhyaapi.queues import boss_status_queue
from luhyaapi.signing import unseal
from nc.models import CommandRecord
from nc.services.commands import execute_command
from nc.services.power import MAX_AGE_SECONDS, PowerOffFailed, StalePowerOff
from tests.commands import broker, purge, run_queued

pytestmark = [pytest.mark.database, pytest.mark.django_db]

WRITE_MARKER = "import pathlib, sys; pathlib.Path(sys.argv[1]).open('a').write('powered off\\n')"


@pytest.fixture(autouse=True)
def never_power_off(settings):
    """Whatever a test here forgets, the machine running it is never powered off."""
    settings.EDUCLOUD = replace(settings.EDUCLOUD, poweroff_argv=(sys.executable, "-c", "raise SystemExit('not here')"))


@pytest.fixture
def marker(tmp_path, settings):
    """The node's power-off command writes a line to this file (and never powers anything off)."""
    path = tmp_path / "powered-off"
    settings.EDUCLOUD = replace(settings.EDUCLOUD, poweroff_argv=(sys.executable, "-c", WRITE_MARKER, str(path)))
    return path


class RecordingBus(InProcessBus):
    """Notes, for every message published, whether the marker file existed at that moment."""

    def __init__(self, marker) -> None:
        super().__init__()
        self.marker = marker
        self.published: list[tuple[str, object, bool]] = []

    def publish_raw(self, queue: str, body: bytes) -> None:
        self.published.append((queue, decode(unseal(body).message), self.marker.exists()))
        super().publish_raw(queue, body)


class Reporter:
    """The parts of the heartbeat the power-off uses, recording what it was asked for in order."""

    def __init__(self, marker) -> None:
        self.marker = marker
        self.events: list[str] = []

    def status(self, state="online"):
        return HeartbeatPublisher("nc", django_settings.EDUCLOUD, InProcessBus()).status(state=state)

    def publish(self, message):
        self.events.append(f"publish {message.state}")

    def report_now(self, last_command=""):
        self.events.append(f"report_now {last_command}")


def test_the_node_reports_stopping_then_runs_the_configured_argv_once(marker):
    bus = RecordingBus(marker)
    heartbeat = HeartbeatPublisher("nc", django_settings.EDUCLOUD, bus)
    command = Command(op="host/poweroff")
    assert execute_command(command, heartbeat) is True
    assert marker.read_text() == "powered off\n"
    ((queue, report, marker_existed),) = bus.published
    assert isinstance(report, NodeStatus)
    assert (queue, report.role, report.name, report.state) == (
        boss_status_queue("nc", django_settings.EDUCLOUD.cluster), "nc", django_settings.EDUCLOUD.name, "stopping")
    assert marker_existed is False  # reported before the command ran
    assert CommandRecord.objects.get(key=command.key).done_at is not None

    redelivered = Command.model_validate_json(command.model_dump_json())
    assert execute_command(redelivered, heartbeat) is False
    assert marker.read_text() == "powered off\n"
    assert len(bus.published) == 1


def test_a_failing_power_off_command_reports_the_node_online_again_and_says_why(settings, tmp_path):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, poweroff_argv=(sys.executable, "-c",
                                                                  "import sys; sys.exit('no permission')"))
    reporter = Reporter(tmp_path / "unused")
    command = Command(op="host/poweroff")
    with pytest.raises(PowerOffFailed, match="exit status 1: no permission"):
        execute_command(command, reporter)
    assert reporter.events == ["publish stopping", f"report_now {command.msg_id}"]


def test_a_missing_power_off_program_is_a_clear_failure(settings, tmp_path):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, poweroff_argv=(str(tmp_path / "no-such-poweroff"),))
    reporter = Reporter(tmp_path / "unused")
    with pytest.raises(PowerOffFailed, match="could not be run"):
        execute_command(Command(op="host/poweroff"), reporter)
    assert reporter.events[0] == "publish stopping"


def test_a_power_off_that_waited_too_long_on_the_queue_is_refused_before_anything_runs(marker):
    reporter = Reporter(marker)
    stale = Command(op="host/poweroff", sent_at=time.time() - MAX_AGE_SECONDS - 5)
    with pytest.raises(StalePowerOff, match="not run"):
        execute_command(stale, reporter)
    assert not marker.exists()
    assert reporter.events == []
    assert not CommandRecord.objects.exists()


def test_on_the_nodes_queue_a_stale_power_off_fails_with_its_reason_and_a_fresh_one_runs(marker):
    bus = RecordingBus(marker)
    heartbeat = HeartbeatPublisher("nc", django_settings.EDUCLOUD, bus)
    node = django_settings.EDUCLOUD.name
    purge(node)
    send_command(broker(), node, Command(op="host/poweroff", sent_at=time.time() - 3600))
    send_command(broker(), node, Command(op="host/poweroff"))
    stale, fresh = run_queued(node, heartbeat)
    assert (stale.state, type(stale.result)) == ("FAILURE", StalePowerOff)
    assert fresh.state == "SUCCESS"
    assert marker.read_text() == "powered off\n"
    reports = [message.state for _queue, message, _ in bus.published if isinstance(message, NodeStatus)]
    assert reports == ["stopping"]


CONFIG = {"EDUCLOUD_HOST_NAME": "pc-12", "EDUCLOUD_ROLES": "nc", "EDUCLOUD_HOST_DATA_DIR": "/tmp/educloud-config-test",
          "EDUCLOUD_CLOUD_CC_URL": "http://10.0.0.1:8000",
          "EDUCLOUD_HOST_PEER_CONFIG_DIR": "/nonexistent"}


def test_the_power_off_command_is_systemctl_poweroff_unless_configured_and_is_split_into_an_argv():
    assert load_config(CONFIG).poweroff_argv == ("systemctl", "poweroff")
    configured = load_config(CONFIG | {"EDUCLOUD_NC_POWEROFF_COMMAND": "/sbin/shutdown -h 'now' ; reboot"})
    # Split into words, never run by a shell: ';' is only a word here.
    assert configured.poweroff_argv == ("/sbin/shutdown", "-h", "now", ";", "reboot")


@pytest.mark.parametrize("value", ["", "   ", "shutdown 'now"])
def test_an_empty_or_unsplittable_power_off_command_stops_the_start_naming_it(value):
    with pytest.raises(ConfigError, match="nc.poweroff_command"):
        load_config(CONFIG | {"EDUCLOUD_NC_POWEROFF_COMMAND": value})
