"""``GET /cc/api/1.0/hosts/<mac>/desktops/``: a classroom PC's node controller asks its CC for the desktops its kiosk
offers; the CC asks the CLC (this test server) and passes the answer on, for its own cluster's PCs only."""

from __future__ import annotations

from dataclasses import replace

import pytest

from luhyadb.models import Host
from nc.tests.kiosk import PC_MAC, make_school

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

URL = f"/cc/api/1.0/hosts/{PC_MAC}/desktops/"


def test_the_cc_passes_on_the_clcs_list_of_the_pcs_desktops(cc, signed_client):
    make_school()
    answer = signed_client.get(URL, sender="pc-12")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["host"]["mac"], body["host"]["cluster"]) == (PC_MAC, "cluster1")
    assert [desktop["name"] for desktop in body["desktops"]] == ["Art studio", "Maths lab"]


def test_a_pc_of_another_cluster_is_refused_with_409(cc, signed_client):
    make_school()
    Host.objects.filter(mac=PC_MAC).update(cluster="elsewhere")
    refused = signed_client.get(URL)
    assert refused.status_code == 409
    assert "elsewhere" in refused.json()["detail"]


def test_a_pc_the_clc_does_not_know_is_a_404_and_a_malformed_mac_a_400(cc, signed_client):
    assert signed_client.get(URL).status_code == 404
    malformed = signed_client.get("/cc/api/1.0/hosts/52:54:00:3c:0f:7e;reboot/desktops/")
    assert (malformed.status_code, "mac" in malformed.json()) == (400, True)


def test_with_the_clc_unreachable_the_cc_answers_502(cc, signed_client, settings):
    make_school()
    settings.EDUCLOUD = replace(settings.EDUCLOUD, clc_url="http://127.0.0.1:9")
    answer = signed_client.get(URL)
    assert answer.status_code == 502
    assert "did not list the desktops" in answer.json()["detail"]


def test_unsigned_calls_are_refused(cc, client):
    make_school()
    assert client.get(URL).status_code == 401
