"""Node controllers as they register with this test server's CC, and a run request for the cluster."""

from __future__ import annotations

from cc.models import ClusterNode
from luhyaapi.keys import HostKey
from luhyaapi.messages import ImageRef, InstanceRunRequest
from tests.keys import enrolled_key

PC_REGISTRATION = {"role": "nc", "name": "pc-12", "ip": "10.0.9.12", "mac": "52:54:00:3c:0f:7e",
                   "cluster": "cluster1", "api_url": "http://10.0.9.12:8000", "heartbeat_seconds": 5,
                   "capacity": {"cpus": 16, "memory_mb": 65536, "disk_mb": 10**6}, "classroom_pc": True}
NODE_REGISTRATION = PC_REGISTRATION | {"name": "nc-1", "ip": "10.0.9.21", "mac": "52:54:00:00:00:21",
                                       "capacity": {"cpus": 2, "memory_mb": 4096, "disk_mb": 10**6}}
IMAGE = ImageRef(image_id="img-0000aaaa", version=1, sha256="a" * 64, size=1024)


def run_request(**changes) -> InstanceRunRequest:
    fields = dict(insid="ins-0000000a", tid="img-0000aaaa:img-0000aaaa:ins-0000000a", seq=1, kind="rvd", image=IMAGE,
                  cpus=1, memory_mb=256, mac="52:54:00:00:00:0a", services=(80,))
    return InstanceRunRequest(**(fields | changes))


def node_key(body: dict) -> HostKey:
    """The key of the node controller ``body`` registers, trusted as what it says it is (a PC's or a server's)."""
    if body.get("classroom_pc"):
        return enrolled_key(body["name"], "pc", mac=body["mac"])
    return enrolled_key(body["name"], body["role"])


def register(signed_client, body: dict) -> ClusterNode:
    """Register a node controller with the CC (signed by it); its record on the CC."""
    answer = signed_client.post("/cc/api/1.0/register/server/", body, key=node_key(body))
    assert answer.status_code == 201, answer.content
    return ClusterNode.objects.get(role="nc", name=body["name"])
