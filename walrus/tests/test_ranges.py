"""Byte ranges of downloads as walrus serves them (luhyaapi.ranges): the single forms, the ones ignored, and the ones
outside the file (416)."""

import pytest

from luhyaapi.ranges import RangeNotSatisfiable, parse_range


@pytest.mark.parametrize("header, expected", [
    ("bytes=0-99", (0, 99)),
    ("bytes=10-19", (10, 19)),
    ("bytes=990-", (990, 999)),
    ("bytes=990-5000", (990, 999)),
    ("bytes=-10", (990, 999)),
    ("bytes=-5000", (0, 999)),
    ("BYTES=5-5", (5, 5)),
])
def test_a_single_range_is_served_clipped_to_the_file(header, expected):
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", [None, "", "bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=-", "bytes=a-b",
                                    "bytes 0-5"])
def test_a_range_this_store_does_not_serve_means_the_whole_file(header):
    assert parse_range(header, 1000) is None


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=-0"])
def test_a_range_outside_the_file_is_not_satisfiable(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 1000)
