"""The node runs each command once, and parks the ones it does not know."""

import pytest

from luhyaapi.messages import Command, InsStatus
from nc.consumers.nc_cmd import NcCommandConsumer
from nc.drivers.base import InvalidVMName
from nc.models import CommandRecord
from nc.services.commands import UnknownCommand, execute_command

pytestmark = [pytest.mark.database, pytest.mark.django_db]


class Reporter:
    def __init__(self):
        self.reports = []

    def report_now(self, last_command=""):
        self.reports.append(last_command)


def test_a_status_report_command_makes_the_node_report_at_once():
    reporter = Reporter()
    command = Command(op="status/report")
    assert execute_command(command, reporter) is True
    assert reporter.reports == [command.msg_id]
    assert CommandRecord.objects.get(key=command.key).done_at is not None


def test_a_redelivered_command_is_not_run_twice():
    reporter = Reporter()
    command = Command(op="status/report", tid="img-0000000a:img-0000000a:ins-0000000b")
    assert execute_command(command, reporter) is True
    redelivered = Command.model_validate_json(command.model_dump_json())
    assert execute_command(redelivered, reporter) is False
    assert reporter.reports == [command.msg_id]


def test_an_unknown_command_is_refused_and_not_recorded():
    with pytest.raises(UnknownCommand, match="image/explode"):
        execute_command(Command(op="image/explode"), Reporter())
    assert not CommandRecord.objects.exists()


def test_a_status_message_on_the_command_queue_is_refused_in_plain_english():
    status = InsStatus(insid="ins-0000a001", node="nc-1", state="running")
    with pytest.raises(UnknownCommand, match="^an insstatus message is not a command$"):
        NcCommandConsumer(Reporter()).consume([status])
    assert not CommandRecord.objects.exists()


@pytest.mark.parametrize("insid", ["ins-;rm -rf /", "../../etc/passwd", "ins-0123abcd\n", "$(reboot)", "", None])
@pytest.mark.parametrize("op", ["instance/run", "instance/stop", "instance/delete", "instance/submit"])
def test_an_instance_command_with_a_hostile_id_is_refused_before_anything_runs(op, insid, monkeypatch):
    import nc.services.instances as instances

    def no_driver():
        raise AssertionError("the hypervisor driver must not even be looked up")

    monkeypatch.setattr(instances, "node_driver", no_driver)
    with pytest.raises(InvalidVMName):
        execute_command(Command(op=op, tid="img-0000000a:img-0000000a:ins-0000000b", paras={"insid": insid}),
                        Reporter())
    assert not CommandRecord.objects.exists()
