"""Message classes: JSON round trip of every class, and refusal of malformed messages."""

import json

import pytest

from luhyaapi.messages import (
    MESSAGE_CLASSES,
    Command,
    HostStatus,
    InsStatus,
    InvalidMessage,
    MetricsReport,
    NodeStatus,
    Resources,
    TaskStatus,
    VmInfo,
    decode,
    encode,
)
from luhyaapi.metrics import MetricSample

SAMPLES = {
    Command: Command(op="status/report", tid="img-0000000a:img-0000000a:ins-0000000b", paras={"force": True}),
    TaskStatus: TaskStatus(tid="img-0000000a:img-0000000b:ins-0000000c", phase="preparing", state="downloading",
                           progress=42, vmstatus="init", ccip="10.0.0.1", ncip="10.0.0.2"),
    NodeStatus: NodeStatus(role="nc", name="nc-1", ip="10.0.0.2", mac="52:54:00:00:00:01", cluster="c1",
                           api_url="http://10.0.0.2:8000", interval=300, seq=7,
                           capacity=Resources(cpus=8, memory_mb=16384, disk_mb=500000),
                           free=Resources(cpus=6.5, memory_mb=8000, disk_mb=400000), cpu_usage=18.7,
                           services={"daemon": "running"},
                           vms=[VmInfo(insid="ins-0000000c", state="running", memory_mb=2048, cpus=2)]),
    HostStatus: HostStatus(name="pc-101", ip="192.168.1.101", mac="52:54:00:00:01:01", cluster="lvd",
                           interval=300, seq=1, memory_mb=8192, disk_mb=250000),
    InsStatus: InsStatus(insid="ins-0000000c", node="nc-1", state="running", vmstatus="running"),
    MetricsReport: MetricsReport(host="nc-1", samples=(MetricSample(
        namespace="eduCloud/Instance", name="CPUUtilization", dimensions={"InstanceId": "ins-0000000c"},
        timestamp=1_800_000_000.0, value=12.5, unit="Percent"),)),
}


def test_every_message_class_has_a_sample():
    assert set(SAMPLES) == set(MESSAGE_CLASSES)


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda cls: cls.__name__)
def test_every_message_class_round_trips_through_json(cls):
    message = SAMPLES[cls]
    body = encode(message)
    assert json.loads(body)["type"] == message.type
    assert json.loads(body)["version"] == 1
    decoded = decode(body)
    assert type(decoded) is cls
    assert decoded == message


def test_each_message_gets_its_own_id_and_send_time():
    first, second = Command(op="status/report"), Command(op="status/report")
    assert first.msg_id != second.msg_id
    assert first.sent_at > 0


def test_command_key_is_tid_and_op_so_a_redelivery_is_recognised():
    command = SAMPLES[Command]
    assert command.key == "img-0000000a:img-0000000a:ins-0000000b:status/report"
    untracked = Command(op="status/report")
    assert untracked.key == untracked.msg_id


@pytest.mark.parametrize("body, reason", [
    (b"not json", "invalid message"),
    (b'{"type": "nosuch"}', "type"),
    (b'{"type": "taskstatus", "tid": "t", "phase": "dancing", "state": "x"}', "phase"),
    (b'{"type": "nodestatus", "role": "nc", "name": "BAD NAME"}', "name"),
    (b'{"type": "taskstatus", "tid": "t", "phase": "init", "state": "x", "progress": 101}', "progress"),
    (b'{"type": "cmd", "op": "x;rm -rf /"}', "op"),
    (b'{"type": "cmd", "op": "status/report", "version": 2}', "version"),
    (b'{"type": "cmd", "op": "status/report", "surprise": 1}', "surprise"),
])
def test_malformed_messages_are_refused_with_the_reason(body, reason):
    with pytest.raises(InvalidMessage, match=reason):
        decode(body)
