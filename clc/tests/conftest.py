"""Fixtures of the CLC's host tests: a staff login, a classroom PC, its cluster controller and its node, its storage
controller."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model

from cc.models import ClusterNode
from clc.tests.classes import two_schools
from clc.tests.machines import MAC, NODE
from luhyaapi.client import RoleClient
from luhyadb.models import Host, Server
from tests.commands import purge
from tests.keys import enrolled_key


@pytest.fixture
def staff(client):
    client.force_login(get_user_model().objects.create_user("boss", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def pc():
    return Host.objects.create(name="pc-12", mac=MAC, ip="10.0.9.12", cluster="cluster1", location="Room 1")


@pytest.fixture
def controller(live_server, cloud_at):
    """This server's CC, online for cluster1 as the CLC knows it."""
    cloud_at(live_server.url)
    return Server.objects.create(role="cc", name="cc-1", ip="10.0.9.1", cluster="cluster1", api_url=live_server.url,
                                 state="online")


@pytest.fixture
def one_node_cloud(live_server, cloud_at, tmp_path):
    """This test server as every role of host "aio", its CC online and one node "nc-1" (enrolled, 2 CPUs, 4 GiB)
    known to the CLC and to the CC: where the CLC's runs go through a real REST call to the CC. Its config."""
    config = cloud_at(live_server.url, data_dir=tmp_path / "host", name="aio")
    Server.objects.create(name="aio", role="cc", ip="127.0.0.1", cluster=config.cluster, api_url=live_server.url,
                          state="online", last_seen=datetime.now(tz=UTC))
    Server.objects.create(name="nc-1", role="nc", ip="127.0.0.1", cluster=config.cluster, state="online")
    enrolled_key("nc-1")
    ClusterNode.objects.create(name="nc-1", role="nc", ip="127.0.0.1", cpus=2, memory_mb=4096, disk_mb=10**5,
                               free_disk_mb=10**5, last_seen=datetime.now(tz=UTC))
    return config


@pytest.fixture
def node(controller):
    """The node controller pc-12 runs, registered with its CC (which announced it to the CLC)."""
    RoleClient(controller.api_url, enrolled_key("pc-12")).post("/cc/api/1.0/register/server/", NODE)
    purge("pc-12")
    return Server.objects.get(role="nc", name="pc-12")


@pytest.fixture
def schools(controller):
    """Two schools sharing this test server's cloud (``clc.tests.classes.two_schools``)."""
    return two_schools()


STORE_MB = 64


@pytest.fixture
def store(settings, tmp_path, controller):
    """This test server's SC, online for cluster1 as the CLC knows it, with a store of ``STORE_MB`` MiB in the
    test's own data dir; returns the folder of its volume files."""
    settings.EDUCLOUD = replace(settings.EDUCLOUD, data_dir=tmp_path / "data", sc_capacity_bytes=STORE_MB * 2**20)
    Server.objects.create(role="sc", name="sc-1", ip="127.0.0.1", cluster="cluster1", api_url=controller.api_url,
                          state="online")
    return tmp_path / "data" / "sc" / "volumes"


@pytest.fixture
def exporting(settings, store, controller):
    """``store``, exporting volumes for real: a tgtd of the test's own (a free iSCSI port on 127.0.0.1 and a
    management port no other tgtd uses, stopped after the test) and the SC registered with this test server's CC
    as sc-1, so the CC's attach has sc-1 export the volume to the instance's node."""
    from cc.models import ClusterNode
    from sc.services.targets import target_server
    from sc.tests.conftest import _free_tcp_port
    from tests.services import free_tgt_control_port

    missing = [tool for tool in ("tgtd", "tgtadm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt tgt)")
    settings.EDUCLOUD = replace(settings.EDUCLOUD, iscsi_listen=("127.0.0.1", _free_tcp_port()),
                                tgt_control_port=free_tgt_control_port())
    ClusterNode.objects.create(role="sc", name="sc-1", ip="127.0.0.1", api_url=controller.api_url)
    yield store
    target_server().stop()
