"""``GET /cc/api/1.0/hosts/<mac>/desktops/``: a classroom PC's node controller asks its CC for the desktops its kiosk
offers; the CC asks the CLC (this test server) and passes the answer on, for its own cluster's PCs only."""

from __future__ import annotations

from dataclasses import replace

import pytest

from luhyadb.models import Host
from nc.tests.kiosk import PC_MAC, make_school
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

URL = f"/cc/api/1.0/hosts/{PC_MAC}/desktops/"


@pytest.fixture
def pc():
    """The key of the PC's node controller."""
    return enrolled_key("pc-12", "pc", mac=PC_MAC)


def test_the_cc_passes_on_the_clcs_list_of_the_pcs_desktops(cc, signed_client, pc):
    make_school()
    answer = signed_client.get(URL, key=pc)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["host"]["mac"], body["host"]["cluster"]) == (PC_MAC, "cluster1")
    assert [desktop["name"] for desktop in body["desktops"]] == ["Art studio", "Maths lab"]


def test_a_pc_of_another_cluster_is_refused_with_409(cc, signed_client, pc):
    make_school()
    Host.objects.filter(mac=PC_MAC).update(cluster="elsewhere")
    refused = signed_client.get(URL, key=pc)
    assert refused.status_code == 409
    assert "elsewhere" in refused.json()["detail"]


def test_a_pc_the_clc_does_not_know_is_a_404_and_a_malformed_mac_a_400(cc, signed_client, pc):
    assert signed_client.get(URL, key=pc).status_code == 404
    malformed = signed_client.get("/cc/api/1.0/hosts/52:54:00:3c:0f:7e;reboot/desktops/", key=pc)
    assert (malformed.status_code, "mac" in malformed.json()) == (400, True)


def test_with_the_clc_unreachable_the_cc_answers_502(cc, signed_client, pc, settings):
    make_school()
    settings.EDUCLOUD = replace(settings.EDUCLOUD, clc_url="http://127.0.0.1:9")
    answer = signed_client.get(URL, key=pc)
    assert answer.status_code == 502
    assert "did not list the desktops" in answer.json()["detail"]


def test_a_pc_asks_for_its_own_desktops_only_and_no_other_host_asks(cc, signed_client, pc):
    make_school()
    other_pc = enrolled_key("pc-13", "pc", mac="52:54:00:3c:0f:7f")
    refused = signed_client.get(URL, key=other_pc)
    assert (refused.status_code, refused.json()["detail"]) == (403, "pc-13 may act only for its own MAC address")
    assert signed_client.get(URL, key=enrolled_key("nc-1", "nc")).status_code == 403
    assert signed_client.get(URL).status_code == 403  # the test host: every server role, but not a PC


def test_unsigned_calls_are_refused(cc, client):
    make_school()
    assert client.get(URL).status_code == 401
