"""The administrator's server actions in a real browser on the all-in-one: the System status page's health checks,
Refresh of the node controller, drain and undrain from the Servers page, and the cluster's port usage page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.browser.pages import shot, wait_services_online

pytestmark = [pytest.mark.e2e]


def test_the_admin_checks_health_refreshes_and_drains_the_node_and_reads_the_port_usage(admin_page, host, admin_api):
    page = admin_page
    aio, _image = host
    page.goto("/clc/")
    wait_services_online(page)
    for check in ("database", "broker", "cache", "dnsmasq (cluster1)"):
        expect(page.locator(f'#health tr[data-check="{check}"] .state')).to_have_text("ok")
    shot(page, "health")

    page.goto("/clc/hosts/servers/?role=nc")
    row = page.locator("#servers tbody tr", has_text=aio.name)
    row.locator('button[data-action="refresh"]').click()
    expect(page.locator(".flash.success")).to_contain_text(f"nc:{aio.name} is asked for its status now")
    shot(page, "refreshed")

    page.on("dialog", lambda dialog: dialog.accept())  # "Drain nc:aio? It keeps what it runs ..."
    row.locator('button[data-action="drain"]').click()
    expect(page.locator(".flash.success")).to_contain_text("is draining")
    row = page.locator("#servers tbody tr", has_text=aio.name)
    expect(row.locator(".state.draining")).to_be_visible()
    assert admin_api.get(f"/clc/api/1.0/servers/nc/{aio.name}/")["draining"] is True
    shot(page, "draining")
    row.locator('button[data-action="undrain"]').click()
    expect(page.locator(".flash.success")).to_contain_text("takes instances again")
    expect(page.locator("#servers tbody tr", has_text=aio.name).locator(".state.draining")).to_have_count(0)

    page.goto("/clc/networks/")
    page.goto("/clc/networks/cluster1/usage/")
    ports = page.locator('#pools tr[data-pool="ports"]')
    expect(ports).to_be_visible()
    expect(ports).to_contain_text(re.compile(r"\d+"))
    shot(page, "port-usage")
