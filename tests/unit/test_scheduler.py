"""The CC scheduler: which node an instance goes to, and why none fits."""

from __future__ import annotations

import pytest

from cc.services.scheduler import (
    CPU_OVERCOMMIT,
    HOST_RESERVE_MB,
    UNTRUSTED,
    Candidate,
    Need,
    NoNodeFits,
    pick_node,
)


def node(name, memory_mb=8192, cpus=4, free_disk_mb=100_000, online=True, committed=None, trusted=True,
         cpu_overcommit=CPU_OVERCOMMIT):
    return Candidate(name=name, online=online, cpus=cpus, memory_mb=memory_mb, free_disk_mb=free_disk_mb,
                     committed=committed or Need(0, 0), trusted=trusted, cpu_overcommit=cpu_overcommit)


def test_a_node_whose_key_is_not_trusted_is_never_chosen_however_much_room_it_has():
    assert pick_node(Need(1, 1024), [node("nc-1", 65536, trusted=False), node("nc-2", 2048)]).name == "nc-2"
    with pytest.raises(NoNodeFits) as raised:
        pick_node(Need(1, 1024), [node("nc-1", 65536, trusted=False)], pinned="nc-1")
    assert raised.value.reasons == {"nc-1": UNTRUSTED}


def test_the_node_with_most_spare_memory_wins():
    chosen = pick_node(Need(1, 1024), [node("nc-1", 4096), node("nc-2", 16384), node("nc-3", 8192)])
    assert chosen.name == "nc-2"


def test_memory_held_by_placed_instances_counts_against_a_node():
    busy = node("nc-big", 16384, committed=Need(2, 12000))
    chosen = pick_node(Need(1, 1024), [busy, node("nc-small", 8192)])
    assert chosen.name == "nc-small"


def test_ties_on_memory_go_to_spare_cpus_then_disk_then_name():
    nodes = [node("nc-b", cpus=2), node("nc-a", cpus=2), node("nc-c", cpus=8)]
    assert pick_node(Need(1, 512), nodes).name == "nc-c"
    assert pick_node(Need(1, 512), nodes[:2]).name == "nc-a"
    assert pick_node(Need(1, 512), [node("nc-x", free_disk_mb=10), node("nc-y", free_disk_mb=20)]).name == "nc-y"


def test_when_no_node_fits_the_error_gives_each_nodes_reason():
    nodes = [node("nc-1", online=False), node("nc-2", memory_mb=1024), node("nc-3", cpus=1, committed=Need(4, 0)),
             node("nc-4", free_disk_mb=100)]
    with pytest.raises(NoNodeFits) as raised:
        pick_node(Need(2, 2048, disk_mb=5000), nodes)
    reasons = raised.value.reasons
    assert reasons["nc-1"] == "offline"
    assert reasons["nc-2"] == f"{max(0, 1024 - HOST_RESERVE_MB)} MB memory free, 2048 MB needed"
    assert reasons["nc-3"] == f"{1 * CPU_OVERCOMMIT - 4:g} virtual CPUs free, 2 needed"
    assert reasons["nc-4"] == "100 MB disk free, 5000 MB needed"
    assert "nc-2: 512 MB memory free, 2048 MB needed" in str(raised.value)


def test_an_empty_cluster_says_so():
    with pytest.raises(NoNodeFits, match="the cluster has no nodes"):
        pick_node(Need(1, 512), [])


def test_a_pinned_node_is_used_even_if_another_has_more_room():
    assert pick_node(Need(1, 512), [node("nc-1", 4096), node("nc-2", 65536)], pinned="nc-1").name == "nc-1"


def test_a_pinned_node_that_does_not_fit_or_exist_is_refused_not_replaced():
    with pytest.raises(NoNodeFits, match="nc-1: offline"):
        pick_node(Need(1, 512), [node("nc-1", online=False), node("nc-2")], pinned="nc-1")
    with pytest.raises(NoNodeFits, match="nc-9: not a node of this cluster"):
        pick_node(Need(1, 512), [node("nc-2")], pinned="nc-9")


def test_a_raised_cpu_overcommit_lets_a_class_of_thirty_fit_on_a_two_core_node():
    thirty = Need(30, 0)
    with pytest.raises(NoNodeFits, match="8 virtual CPUs free, 30 needed"):
        pick_node(thirty, [node("nc-1", 65536, cpus=2)])
    assert pick_node(thirty, [node("nc-1", 65536, cpus=2, cpu_overcommit=15)]).name == "nc-1"
