"""The alarm state machine (``watch.services.alarms.decide``), a pure function: threshold crossings for each
comparison, evaluation periods, missing data (INSUFFICIENT_DATA, or the watchdog's kept state), the reason in
CloudWatch's words, and a property over random windows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watch.models import AlarmComparison, AlarmState
from watch.services.alarms import Rule, decide, window

GT, GE, LT, LE = (AlarmComparison.GREATER, AlarmComparison.GREATER_OR_EQUAL, AlarmComparison.LESS,
                  AlarmComparison.LESS_OR_EQUAL)
OK, ALARM, NODATA = AlarmState.OK, AlarmState.ALARM, AlarmState.INSUFFICIENT_DATA
START = 1_767_225_600


def rule(comparison=GT, threshold=90.0, periods=3, period=60, keeps=False) -> Rule:
    return Rule("Average", comparison, threshold, period, periods, missing_keeps_state=keeps)


def series(*values: float | None, period: int = 60) -> dict[int, float]:
    """The window's periods from START, None for one without data."""
    return {START + number * period: value for number, value in enumerate(values) if value is not None}


def test_three_breaching_periods_of_three_raise_the_alarm_with_cloudwatchs_reason():
    decision = decide(rule(), OK, series(91.0, 95.2, 99.0), START)
    assert decision.state == ALARM
    assert decision.reason == ("Threshold Crossed: 3 datapoints [91.0, 95.2, 99.0] were greater than the threshold "
                               "(90.0).")
    assert decision.datapoints == ({"timestamp": START, "value": 91.0}, {"timestamp": START + 60, "value": 95.2},
                                   {"timestamp": START + 120, "value": 99.0})


@pytest.mark.parametrize(("comparison", "threshold", "values", "state"), [
    (GT, 90, (91, 85, 99), OK),  # one calm period of three is enough to stay OK
    (GT, 90, (90, 90, 90), OK),  # equal is not greater
    (GE, 90, (90, 90, 90), ALARM),
    (LT, 1, (0, 0, 0), ALARM),
    (LT, 1, (1, 1, 1), OK),
    (LE, 1, (1, 0.5, 1), ALARM),
    (LE, 1, (1, 1.5, 1), OK),
    (GT, 90, (None, 95, 99), OK),  # a period without data does not breach
    (GT, 90, (None, None, 99), OK),
    (GT, 90, (None, None, None), NODATA),
    (GT, -5, (-4, -3, -1), ALARM),  # negative thresholds compare as numbers
])
def test_each_comparison_and_missing_period_gives_its_state(comparison, threshold, values, state):
    assert decide(rule(comparison, threshold), OK, series(*values), START).state == state


def test_one_evaluation_period_decides_on_the_last_period_alone():
    assert decide(rule(periods=1), OK, series(95.0), START).state == ALARM
    assert decide(rule(periods=1), ALARM, series(80.0), START).state == OK


def test_a_calm_period_is_named_in_the_reason_for_ok():
    decision = decide(rule(), ALARM, series(91.0, 85.0, 99.0), START)
    assert decision.reason == ("Threshold Crossed: 1 of 3 datapoints [91.0, 85.0, 99.0] was not greater than the "
                               "threshold (90.0).")


def test_a_missing_period_is_named_in_the_reason_for_ok():
    decision = decide(rule(), ALARM, series(None, 95.0, 99.0), START)
    assert decision.state == OK
    assert decision.reason == ("Threshold Crossed: 2 datapoints [95.0, 99.0] were greater than the threshold (90.0); "
                               "1 of the last 3 periods had no datapoint.")


def test_no_datapoint_in_the_window_is_insufficient_data_whatever_the_state_was():
    for state in (OK, ALARM, NODATA):
        decision = decide(rule(), state, {}, START)
        assert decision.state == NODATA
        assert decision.reason == "Insufficient Data: no datapoint in the last 3 periods of 60 s"
        assert decision.datapoints == ()


def test_the_watchdog_keeps_its_state_when_the_instance_sends_nothing():
    watchdog = rule(LT, 1.0, periods=1, keeps=True)
    assert decide(watchdog, ALARM, {}, START).state == ALARM
    assert decide(watchdog, OK, {}, START).state == OK
    assert decide(watchdog, OK, series(0.0), START).state == ALARM


def test_datapoints_outside_the_window_are_not_looked_at():
    values = series(99.0, 99.0, 99.0) | {START - 60: 10.0, START + 180: 10.0}
    assert decide(rule(), OK, values, START).state == ALARM


def test_the_window_is_the_last_whole_periods_before_now():
    assert window(rule(periods=3, period=300), START + 3 * 300 + 299.5) == (START, START + 900)
    assert window(rule(periods=1, period=60), START + 60) == (START, START + 60)


values_or_gaps = st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)), min_size=1, max_size=12)


@given(values=values_or_gaps, threshold=st.floats(-1e6, 1e6, allow_nan=False),
       comparison=st.sampled_from(list(AlarmComparison)), state=st.sampled_from(list(AlarmState)),
       keeps=st.booleans())
def test_property_alarm_exactly_when_every_period_breaches(values, threshold, comparison, state, keeps):
    compare = {GT: float.__gt__, GE: float.__ge__, LT: float.__lt__, LE: float.__le__}[comparison]
    decision = decide(rule(comparison, threshold, periods=len(values), keeps=keeps), state, series(*values), START)
    present = [float(value) for value in values if value is not None]
    if not present:
        assert decision.state == (state if keeps else NODATA)
        assert decision.datapoints == ()
    elif len(present) == len(values) and all(compare(value, float(threshold)) for value in present):
        assert decision.state == ALARM
    else:
        assert decision.state == OK
    assert [point["value"] for point in decision.datapoints] == (present if present else [])
    for value in present[:3]:
        assert repr(round(value, 4)) in decision.reason
