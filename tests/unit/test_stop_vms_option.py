"""The choice to stop a node's VMs when its host ends: the ``--stop-vms`` flag or ``EDUCLOUD_STOP_VMS_ON_EXIT``,
whose unknown values are refused by name rather than read as no."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from daemons.stop_vms import stop_vms_option


@pytest.mark.parametrize("flag, value, chosen", [
    (True, None, True), (False, None, False), (False, "", False), (False, "1", True), (False, "yes", True),
    (False, "TRUE", True), (False, "0", False), (False, "off", False), (True, "0", True)])
def test_the_flag_or_the_environment_chooses_to_stop_the_vms(flag, value, chosen):
    environ = {} if value is None else {"EDUCLOUD_STOP_VMS_ON_EXIT": value}
    assert stop_vms_option(flag, environ) is chosen


def test_an_unknown_value_is_refused_naming_the_variable():
    with pytest.raises(CommandError, match="EDUCLOUD_STOP_VMS_ON_EXIT must be 1 or 0"):
        stop_vms_option(False, {"EDUCLOUD_STOP_VMS_ON_EXIT": "maybe"})
