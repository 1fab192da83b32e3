"""Names and addresses are checked before they can reach a command line, a queue name or a path."""

import pytest

from luhyaapi.queues import cc_status, node_commands
from luhyaapi.validators import (
    InvalidValue,
    validate_display_name,
    validate_ip,
    validate_mac,
    validate_name,
    validate_owner_path,
)

HOSTILE = ["", "../etc", "/abs", "a b", "a;reboot", "a$(id)", "a`id`", "a|b", "a\x00b", "A", "-a", "a-", "a" * 64,
           "a\nb", "a.b"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_names_are_refused(value):
    with pytest.raises(InvalidValue):
        validate_name(value)


@pytest.mark.parametrize("value", ["nc-1", "a", "cluster-42", "x" * 63])
def test_plain_names_pass(value):
    assert validate_name(value) == value


@pytest.mark.parametrize("value", HOSTILE[:10])
def test_queue_names_cannot_be_built_from_hostile_names(value):
    with pytest.raises(InvalidValue):
        node_commands(value)
    with pytest.raises(InvalidValue):
        cc_status(value)


def test_macs_are_normalised_and_bad_ones_refused():
    assert validate_mac("52-54-00-AB-CD-EF") == "52:54:00:ab:cd:ef"
    with pytest.raises(InvalidValue, match="mac"):
        validate_mac("52:54:00:ab:cd")


def test_ips_are_checked():
    assert validate_ip("10.0.0.1") == "10.0.0.1"
    for bad in ("10.0.0.256", "10.0.0.1; reboot", "", "localhost"):
        with pytest.raises(InvalidValue):
            validate_ip(bad)


def test_owner_paths_are_dotted_words_of_any_depth():
    assert validate_owner_path("edu.cloud.longyou.country.school.class.room.x.y.z")
    for bad in ("edu..school", ".edu", "edu.", "edu school", "edu/school", "edu.*"):
        with pytest.raises(InvalidValue):
            validate_owner_path(bad)


def test_owner_paths_are_lower_case_and_the_refusal_says_how_to_write_one():
    with pytest.raises(InvalidValue, match="use 'edu.s1.c1'"):
        validate_owner_path("edu.S1.c1")


@pytest.mark.parametrize("value", ["../etc/passwd", "/etc/passwd", "a\x00b", "win; reboot", "x$(id)", "x`id`",
                                   "a|b", "a > b", "..", "a\\b", "tab\there", "", "   ", "x" * 101])
def test_hostile_display_names_are_refused(value):
    with pytest.raises(InvalidValue):
        validate_display_name(value)


@pytest.mark.parametrize("value", ["Windows 10 (class A)", "Ubuntu 24.04 LTS", "数学课桌面", "lab-1_v2, final+",
                                   "a@b:c"])
def test_ordinary_display_names_pass(value):
    assert validate_display_name(value) == value


@pytest.mark.parametrize("check, value", [
    (validate_name, "nc-1\n"), (validate_owner_path, "edu.school\n"), (validate_name, "nc-1\r\n"),
])
def test_a_value_with_a_trailing_newline_is_refused(check, value):
    with pytest.raises(InvalidValue):
        check(value)
