"""An instance's ``services`` (guest TCP ports reached from outside) follow one rule, ``validate_ports``, whether
typed in the console's form (``80, 443``) or sent to the API (``[80, 443]``): the same ports are refused with the
same message, and the same ones accepted."""

from __future__ import annotations

import pytest

from clc.api.serializers import InstanceSerializer
from clc.forms import InstanceForm, PortListField

pytestmark = [pytest.mark.database, pytest.mark.django_db]


def form_errors(text: str) -> list[str]:
    form = InstanceForm(data={"services": text})
    form.is_valid()
    return form.errors.get("services", [])


def api_errors(ports: list) -> list[str]:
    serializer = InstanceSerializer(data={"services": ports})
    serializer.is_valid()
    return [str(error) for error in serializer.errors.get("services", [])]


@pytest.mark.parametrize("text, ports, message", [
    ("0", [0], "'0' is not a TCP port (a whole number from 1 to 65535)"),
    ("70000", [70000], "'70000' is not a TCP port (a whole number from 1 to 65535)"),
    ("80; id", ["80; id"], "'80; id' is not a TCP port (a whole number from 1 to 65535)"),
    ("9" * 5000, ["9" * 5000], "'999999999999' is not a TCP port (a whole number from 1 to 65535)"),
    ("80, 443, 80", [80, 443, 80], "a port is listed twice"),
    ("1, 2, 3, 4, 5, 6, 7, 8, 9", list(range(1, 10)), "at most 8 ports"),
])
def test_the_form_and_the_api_refuse_the_same_ports_with_the_same_message(text, ports, message):
    assert form_errors(text) == [message]
    assert api_errors(ports) == [message]


@pytest.mark.parametrize("value", [True, 80.5, None, {"port": 80}])
def test_the_api_refuses_what_is_not_a_whole_number(value):
    [message] = api_errors([value])
    assert message.endswith("is not a TCP port (a whole number from 1 to 65535)")


def test_both_accept_up_to_eight_different_ports():
    assert form_errors("22, 80, 443, 1, 2, 3, 4, 65535") == []
    assert api_errors([22, 80, 443, 1, 2, 3, 4, 65535]) == []
    assert PortListField().clean(" 22,80 ,") == [22, 80]
