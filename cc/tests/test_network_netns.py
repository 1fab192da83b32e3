"""tests/netns.py, the namespace helper the network tests (and multi-host tests) build on: what it makes is wired
as asked and is gone afterwards, even when the test fails half-way."""

import subprocess

import pytest

from tests.netns import Network, missing_requirements, popen_in, run_in, unique_name


@pytest.fixture(autouse=True)
def needs_namespaces():
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def test_everything_made_is_removed_even_when_the_test_fails():
    with pytest.raises(RuntimeError, match="half-way"):
        with Network() as net:
            a, b, switch = net.namespace("a"), net.namespace("b"), net.namespace("switch")
            net.veth(a, "x0", b, "y0", a_cidr="10.9.0.1/24", b_mac="52:54:00:09:00:02")
            net.bridge(switch, "br0")
            port = net.plug(switch, "br0", a, "lan0", cidr="10.8.0.1/24")
            assert "52:54:00:09:00:02" in b.ip("link", "show", "y0").stdout
            assert "master br0" in switch.ip("link", "show", port).stdout
            assert "10.8.0.1/24" in run_in(a, ["ip", "-4", "addr", "show", "lan0"]).stdout
            tracked = net.popen(a, ["sleep", "600"])
            # Not tracked, as a daemon that forked away would not be: found and killed through its namespace.
            stray = popen_in(b, ["sleep", "600"])
            raise RuntimeError("failed half-way")
    for namespace in (a, b, switch):
        assert namespace.name not in namespaces()
    assert tracked.poll() is not None
    assert stray.wait(timeout=5) == -9


def test_names_are_short_and_unique():
    names = {unique_name("veth") for _ in range(100)}
    assert len(names) == 100 and all(len(name) == 15 and name.startswith("veth") for name in names)
    with pytest.raises(ValueError):
        Network().namespace("not a role")
