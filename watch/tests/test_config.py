"""The watch role's settings: how long raw points and rollups are kept, how often metrics are sampled and alarms
evaluated, with CloudWatch-like defaults and an error naming each wrong one."""

import pytest

from luhyaapi.config import ConfigError, load_config

BASE = {
    "EDUCLOUD_HOST_NAME": "watch-1",
    "EDUCLOUD_ROLES": "watch",
    "EDUCLOUD_HOST_DATA_DIR": "/tmp/educloud-config-test",
    "EDUCLOUD_HOST_PEER_CONFIG_DIR": "/nonexistent",
}


def test_raw_points_are_kept_two_days_rollups_fifteen_and_455_and_samples_and_evaluations_come_every_minute():
    config = load_config(BASE)
    assert (config.watch_raw_days, config.watch_rollup_5m_days, config.watch_rollup_1h_days,
            config.watch_sample_seconds, config.watch_evaluate_seconds) == (2, 15, 455, 60, 60)


def test_the_retention_the_sample_period_and_the_evaluation_period_can_be_set():
    config = load_config(BASE | {"EDUCLOUD_WATCH_RAW_DAYS": "0.5", "EDUCLOUD_WATCH_ROLLUP_5M_DAYS": "30",
                                 "EDUCLOUD_WATCH_ROLLUP_1H_DAYS": "800", "EDUCLOUD_WATCH_SAMPLE_SECONDS": "10",
                                 "EDUCLOUD_WATCH_EVALUATE_SECONDS": "15"})
    assert (config.watch_raw_days, config.watch_rollup_5m_days, config.watch_rollup_1h_days,
            config.watch_sample_seconds, config.watch_evaluate_seconds) == (0.5, 30, 800, 10, 15)


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("EDUCLOUD_WATCH_SAMPLE_SECONDS", "5", "below the minimum 10"),
    ("EDUCLOUD_WATCH_SAMPLE_SECONDS", "often", "not a number"),
    ("EDUCLOUD_WATCH_SAMPLE_SECONDS", "30.5", "not a number"),
    ("EDUCLOUD_WATCH_EVALUATE_SECONDS", "1", "below the minimum 10"),
    ("EDUCLOUD_WATCH_RAW_DAYS", "0", "below the minimum"),
    ("EDUCLOUD_WATCH_ROLLUP_5M_DAYS", "1", "shorter than watch.raw_days"),
    ("EDUCLOUD_WATCH_ROLLUP_1H_DAYS", "10", "shorter than watch.rollup_5m_days"),
])
def test_a_wrong_watch_setting_fails_naming_it(variable, value, says):
    setting = variable.removeprefix("EDUCLOUD_").lower().replace("_", ".", 1)
    with pytest.raises(ConfigError) as error:
        load_config(BASE | {variable: value})
    assert f"setting {setting} ({variable})" in str(error.value) and says in str(error.value)
