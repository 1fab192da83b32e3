"""Ids and task ids."""

import re

import pytest

from luhyaapi.ids import InvalidId, TaskId, new_id, validate_id


def test_new_ids_have_the_kind_prefix_and_8_hex_digits():
    for kind, prefix in (("image", "img"), ("instance", "ins"), ("volume", "vol")):
        assert re.fullmatch(prefix + r"-[0-9a-f]{8}", new_id(kind))


def test_new_ids_do_not_repeat():
    assert len({new_id("image") for _ in range(1000)}) == 1000


def test_unknown_kind_is_refused():
    with pytest.raises(InvalidId, match="unknown resource kind"):
        new_id("banana")


@pytest.mark.parametrize("bad", ["", "img-123", "img-0123456g", "IMG-01234567", "xyz-01234567", "img-01234567 ",
                                 "../img-01234567", "img-01234567;rm"])
def test_malformed_ids_are_refused(bad):
    with pytest.raises(InvalidId):
        validate_id(bad)


@pytest.mark.parametrize(("value", "kind", "message"), [
    ("img-01234567", "instance", "is not an instance id"),
    ("ins-01234567", "image", "is not an image id"),
    ("img-01234567", "upload", "is not an upload id"),
    ("img-01234567", "server", "is not a server id"),
    ("img-01234567", "host", "is not a host id"),
])
def test_an_id_of_the_wrong_kind_is_refused_in_plain_english(value, kind, message):
    with pytest.raises(InvalidId, match=message):
        validate_id(value, kind)


def test_task_id_round_trips_as_src_dst_ins():
    tid = TaskId.new("img-0000000a", "img-0000000b")
    assert str(tid).startswith("img-0000000a:img-0000000b:ins-")
    assert TaskId.parse(str(tid)) == tid


def test_a_modify_task_has_the_same_source_and_destination():
    tid = TaskId.new("img-0000000a")
    assert tid.src == tid.dst == "img-0000000a"


@pytest.mark.parametrize("bad", ["img-0000000a:img-0000000b", "img-0000000a:img-0000000b:img-0000000c",
                                 "a:b:c:d", "img-0000000a:img-0000000b:ins-0000000c:x"])
def test_malformed_task_ids_are_refused(bad):
    with pytest.raises(InvalidId):
        TaskId.parse(bad)


@pytest.mark.parametrize("value", ["ins-0123abcd\n", "ins-0123abcd\r\n", " ins-0123abcd"])
def test_an_id_with_a_trailing_newline_or_space_is_refused(value):
    with pytest.raises(InvalidId):
        validate_id(value, "instance")
