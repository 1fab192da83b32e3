"""The console's charts and Monitoring page (issue 17) as the server renders them: the instance page charts its own
instance's metrics, the host pages and the Monitoring page's host charts are the cloud's administrators' only (as the
metrics API rules), the sample period comes from the settings, the Monitoring page lists alarms from the alarms API
for who may read instances, and nothing the charts load comes from outside the CLC (offline classrooms). What the
scripts draw is proven in the browser (tests/e2e/browser/test_metric_charts.py)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from clc.tests.classes import as_, school_records
from luhyadb.models import Host, Instance, Server

pytestmark = [pytest.mark.database, pytest.mark.django_db]

STATIC = Path(__file__).resolve().parents[1] / "static" / "clc"


@pytest.fixture
def world():
    """Two schools (``school_records``), the root's administrator, an instance of school 1's class c1, a server and
    a classroom PC of school 1."""
    records = school_records()
    records["root"] = get_user_model().objects.create_user("boss", is_staff=True, is_superuser=True)
    records["instance"] = Instance.objects.create(
        instance_id="ins-0000c0de", name="Maths desktop", kind="rvd", image=records["images"]["edu.s1"],
        vm_type=records["tiny"], owner_group=records["c1"], mac="52:54:00:00:00:01")
    Server.objects.create(name="nc-1", role="nc", ip="10.0.0.5", cluster="cluster1", state="online")
    records["pc"] = Host.objects.create(name="pc-12", mac="52:54:00:12:34:56", ip="10.0.9.12", cluster="cluster1",
                                        owner_group=records["s1"])
    return records


def _page(client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    return response.content.decode()


def _charts(html: str) -> list[str]:
    return re.findall(r'<figure class="metric-chart" data-chart="(\w+)"', html)


def test_the_instance_page_charts_cpu_memory_disk_and_network_of_that_instance(world):
    html = _page(as_(world["teacher1"]), "/clc/instances/ins-0000c0de/")
    assert 'data-namespace="eduCloud/Instance"' in html
    assert 'data-dimensions="InstanceId=ins-0000c0de"' in html
    assert 'data-api="/clc/api/1.0/metrics/statistics/"' in html
    assert _charts(html) == ["cpu", "memory", "disk", "network"]
    assert 'data-series="DiskReadBytes=Read,DiskWriteBytes=Written"' in html
    assert 'data-series="NetworkIn=In,NetworkOut=Out"' in html
    for label in ("Last hour", "Last day", "Last week"):
        assert label in html
    assert "clc/charts.js" in html


def test_the_charts_refresh_every_sample_period_of_the_settings(world, settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, watch_sample_seconds=30)
    html = _page(as_(world["teacher1"]), "/clc/instances/ins-0000c0de/")
    assert 'data-sample-seconds="30"' in html
    assert "a point every 30 s" in html


def test_the_cloud_administrator_sees_a_classroom_pcs_host_charts_on_its_page(world):
    html = _page(as_(world["root"]), f"/clc/hosts/{world['pc'].mac}/edit/")
    assert 'data-namespace="eduCloud/Host"' in html and 'data-dimensions="HostName=pc-12"' in html
    assert _charts(html) == ["cpu", "memory", "load", "network", "disk"]
    assert 'data-series="MemoryUsed=Used,MemoryTotal=Total"' in html


def test_a_school_administrator_gets_the_pc_page_without_host_charts_which_are_the_clouds(world):
    html = _page(as_(world["head1"]), f"/clc/hosts/{world['pc'].mac}/edit/")
    assert "pc-12" in html
    assert "metric-charts" not in html and "charts.js" not in html


def test_the_servers_list_links_each_server_to_its_charts(world):
    html = _page(as_(world["root"]), "/clc/hosts/servers/")
    assert 'href="/clc/monitoring/?host=nc-1" data-action="charts"' in html


def test_the_monitoring_page_lists_alarms_from_the_alarms_api_with_the_state_badges(world):
    html = _page(as_(world["teacher1"]), "/clc/monitoring/")
    assert 'id="alarms" data-api="/clc/api/1.0/alarms/"' in html
    assert 'data-instance-url="/clc/instances/"' in html and 'data-refresh-seconds="60"' in html
    for state in ("OK", "ALARM", "INSUFFICIENT_DATA"):
        assert f'<span class="state alarm-{state}">{state}</span>' in html
    assert "clc/monitoring.js" in html
    assert "metric-charts" not in html, "no host was asked for"
    assert 'id="host-pick"' not in html, "a teacher may not read host metrics: no host to pick"


def test_the_monitoring_link_is_in_the_nav_of_who_may_open_the_page(world):
    assert '<a href="/clc/monitoring/">Monitoring</a>' in _page(as_(world["teacher1"]), "/clc/instances/")
    assert '<a href="/clc/monitoring/">Monitoring</a>' in _page(as_(world["root"]), "/clc/instances/")


def test_a_student_is_sent_to_their_desktops_from_the_monitoring_page(world):
    response = as_(world["students"][0]).get("/clc/monitoring/")
    assert response.status_code == 302 and response.url == "/portal/"


def test_nobody_logged_in_is_sent_to_log_in(world, client):
    response = client.get("/clc/monitoring/")
    assert response.status_code == 302 and response.url.startswith("/clc/login/")


def test_the_cloud_administrator_picks_a_host_and_gets_its_charts(world):
    html = _page(as_(world["root"]), "/clc/monitoring/?host=nc-1")
    assert 'id="host-pick"' in html
    assert '<option value="nc-1" selected>' in html and '<option value="pc-12">' in html
    assert 'data-namespace="eduCloud/Host"' in html and 'data-dimensions="HostName=nc-1"' in html


def test_host_charts_are_refused_to_a_school_administrator_and_unknown_hosts_are_404(world):
    _page(as_(world["head1"]), "/clc/monitoring/?host=nc-1", 403)
    _page(as_(world["head1"]), "/clc/monitoring/?host=pc-12", 403)
    _page(as_(world["root"]), "/clc/monitoring/?host=nowhere", 404)
    _page(as_(world["root"]), "/clc/monitoring/?host=%3Cscript%3E", 404)


def test_the_chart_scripts_fetch_nothing_but_the_clcs_own_api(world):
    """Offline classrooms: no CDN, no other site; the only absolute URL is SVG's namespace name, which is never
    fetched."""
    for name in ("charts.js", "monitoring.js"):
        source = (STATIC / name).read_text()
        assert set(re.findall(r"https?://[^\s\"'`]+", source)) <= {"http://www.w3.org/2000/svg"}, name
        assert "import(" not in source and "<script" not in source, name
    html = _page(as_(world["root"]), "/clc/monitoring/?host=nc-1")
    assert not re.search(r'(src|href)="(https?:)?//', html), "a page loads something from another site"
