"""Fixtures of the CC's tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def cc(live_server, cloud_at):
    """This test server as the CC of cluster1 and as the CLC it announces its nodes to and asks."""
    return cloud_at(live_server.url)
