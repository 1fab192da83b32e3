"""The node runs each command once, again only when it was taken and never finished, and refuses the ones it does
not know."""

import pytest

from luhyaapi.messages import Command
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


def test_a_command_taken_and_never_finished_runs_again_when_it_is_delivered_again():
    """The node died under it: its record has no end, and the broker hands the task over again."""
    reporter = Reporter()
    command = Command(op="status/report", tid="img-0000000a:img-0000000a:ins-0000000b")
    CommandRecord.objects.create(key=command.key, op=command.op, msg_id=command.msg_id)
    assert execute_command(command, reporter) is True
    assert reporter.reports == [command.msg_id]
    assert CommandRecord.objects.get(key=command.key).done_at is not None


def test_a_command_this_process_runs_now_is_skipped_when_the_broker_hands_it_over_twice(monkeypatch):
    import nc.services.commands as commands

    reporter = Reporter()
    command = Command(op="status/report", tid="img-0000000a:img-0000000a:ins-0000000b")
    twice = []

    def report_and_meet_the_second_copy(command, reporter):
        twice.append(execute_command(Command.model_validate_json(command.model_dump_json()), reporter))
        reporter.report_now(command.msg_id)

    monkeypatch.setitem(commands.HANDLERS, "status/report", commands.Handler(report_and_meet_the_second_copy))
    assert execute_command(command, reporter) is True
    assert (twice, reporter.reports) == ([False], [command.msg_id])


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
