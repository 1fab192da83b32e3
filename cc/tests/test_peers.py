"""Nodes and classroom PCs may reach only their CC: they learn from it who their cluster's controllers are, to check
the commands on their queues (``GET /cc/api/1.0/peers/<name>/``), and nothing about any other host."""

from __future__ import annotations

from dataclasses import replace

import pytest
from django.core.cache import cache

from luhyaapi import trust
from luhyaapi.trust import own_key
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db]

PEER = "/cc/api/1.0/peers/{}/"


def test_a_node_or_pc_of_the_cluster_learns_its_cc_from_it(signed_client):
    for key in (enrolled_key("nc-1"), enrolled_key("pc-12", "pc", mac="52:54:00:3c:0f:12")):
        answer = signed_client.get(PEER.format("test"), key=key)
        assert answer.status_code == 200, answer.content
        assert answer.json() | {"roles": []} == {"name": "test", "public_key": own_key().public_key, "roles": [],
                                                 "cluster": "cluster1", "mac": ""}
        assert "cc" in answer.json()["roles"]


def test_it_learns_nothing_about_other_hosts(signed_client):
    node = enrolled_key("nc-1")
    enrolled_key("nc-2")
    enrolled_key("cc-9", "cc", cluster="cluster2")
    for name in ("nc-2", "cc-9", "nobody"):
        answer = signed_client.get(PEER.format(name), key=node)
        assert answer.status_code == 404, name
        assert answer.json()["detail"] == f"{name} is not a trusted controller of cluster cluster1"


def test_a_host_of_another_cluster_or_role_may_not_ask(signed_client):
    assert signed_client.get(PEER.format("test"), key=enrolled_key("nc-9", cluster="cluster2")).status_code == 403
    assert signed_client.get(PEER.format("test"), key=enrolled_key("store", "walrus")).status_code == 403


@pytest.mark.parametrize("roles, asked", [(("nc",), "http://cc.example:8000/cc/api/1.0/peers/cc-1/"),
                                          (("nc", "sc"), "http://cc.example:8000/cc/api/1.0/peers/cc-1/"),
                                          (("walrus",), "http://clc.example:8000/clc/api/1.0/peers/cc-1/"),
                                          (("cc", "nc"), "http://clc.example:8000/clc/api/1.0/peers/cc-1/")])
def test_a_host_of_cluster_roles_only_asks_its_cc_any_other_the_clc(settings, monkeypatch, roles, asked):
    from luhyaapi import client

    cache.clear()  # no answer kept from an earlier ask
    settings.EDUCLOUD = replace(settings.EDUCLOUD, roles=roles, cc_url="http://cc.example:8000",
                                clc_url="http://clc.example:8000")
    monkeypatch.setattr(trust, "_local_resolver", None)
    urls = []

    def get(self, path):
        urls.append(self.base_url + path)
        return {"name": "cc-1", "public_key": enrolled_key("cc-1", "cc").public_key, "roles": ["cc"],
                "cluster": "cluster1", "mac": ""}

    monkeypatch.setattr(client.RoleClient, "get", get)
    assert trust.peer("cc-1").roles == {"cc"}
    assert urls == [asked]
