"""The query parameters and answers of the metric API (issue 17), shared by the watch role's API and the CLC's, which
checks who may ask and then forwards the query: both read a request with these serializers, so the CLC decides on
exactly the dimensions the watch will filter by (a name given twice, say, is refused here, not read one way by one
and another way by the other).

``dimensions`` is ``Name=value,Name=value`` (at most ``MAX_DIMENSIONS``; a bare ``Name`` in a filter: any value);
names and values are held to ``luhyaapi.metrics``' alphabet, which has neither ``,`` nor ``=``, so the text has one
reading. Times are epoch seconds or ISO 8601 (UTC when no offset is given).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from pydantic import TypeAdapter
from rest_framework import serializers

from luhyaapi.metrics import (
    DIMENSION_NAME_ADAPTER,
    DIMENSION_VALUE_ADAPTER,
    MAX_DIMENSIONS,
    METRIC_NAME_ADAPTER,
    NAMESPACE_ADAPTER,
    STATISTICS,
    conforms,
)

# The last second of year 9999: times past it are no use and would overflow the store's arithmetic.
MAX_TIME = 253402300799
# The longest period asked of the store (a year) and the furthest a list may skip.
MAX_PERIOD = 366 * 86400
MAX_OFFSET = 10**9
DEFAULT_LIST = 100
MAX_LIST = 500


def parse_dimensions(text: str, *, any_value: bool) -> dict[str, str | None]:
    """``Name=value,...`` as a mapping; a bare ``Name`` is ``None`` (any value) when ``any_value``. Raises
    ``serializers.ValidationError`` saying what is wrong: more than MAX_DIMENSIONS, a name given twice, a name or
    value outside the alphabet."""
    if text == "":
        return {}
    parts = text.split(",", MAX_DIMENSIONS)  # never more than one part too many, however long the text
    if len(parts) > MAX_DIMENSIONS:
        raise serializers.ValidationError(f"more than {MAX_DIMENSIONS} dimensions")
    dimensions: dict[str, str | None] = {}
    for part in parts:
        name, equals, value = part.partition("=")
        if not conforms(DIMENSION_NAME_ADAPTER, name):
            raise serializers.ValidationError(f"{name[:40]!r} is not a dimension name (a letter, then letters and "
                                              "digits, at most 32)")
        if name in dimensions:
            raise serializers.ValidationError(f"dimension {name} is given twice")
        if not equals and any_value:
            dimensions[name] = None
            continue
        if not conforms(DIMENSION_VALUE_ADAPTER, value):
            raise serializers.ValidationError(f"{name}={value[:40]!r}: a dimension value is 1 to 128 letters, digits "
                                              "and _.:-")
        dimensions[name] = value
    return dimensions


def format_dimensions(dimensions: dict[str, str | None]) -> str:
    """The text ``parse_dimensions`` reads back as ``dimensions``."""
    return ",".join(name if value is None else f"{name}={value}" for name, value in dimensions.items())


def parse_time(text: str) -> float:
    """Epoch seconds or ISO 8601 (UTC unless it says otherwise) as epoch seconds from 0 to MAX_TIME."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise serializers.ValidationError(f"{text[:40]!r} is not a time (epoch seconds or ISO 8601)") from None
        seconds = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_TIME:
        raise serializers.ValidationError(f"{text[:40]!r} is not a time from 1970 to 9999")
    return seconds


class DimensionsField(serializers.CharField):
    """``Name=value,...`` (a filter: a bare ``Name`` matches any value when ``any_value``)."""

    def __init__(self, *, any_value: bool = True, **kwargs) -> None:
        self.any_value = any_value
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("default", dict)  # a default is not parsed: the empty filter itself
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def run_validation(self, data=serializers.empty):
        value = super().run_validation(data)
        return {} if value == "" else value  # DRF hands an empty text back without to_internal_value

    def to_internal_value(self, data):
        return parse_dimensions(super().to_internal_value(data), any_value=self.any_value)


class PatternField(serializers.CharField):
    """A namespace or metric name as samples may have them (``luhyaapi.metrics``)."""

    def __init__(self, adapter: TypeAdapter, what: str, **kwargs) -> None:
        self.adapter = adapter
        self.what = what
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not conforms(self.adapter, value):
            raise serializers.ValidationError(f"{value[:80]!r} is not a {self.what}")
        return value


class TimeField(serializers.CharField):
    def to_internal_value(self, data):
        return parse_time(super().to_internal_value(data))


class StatisticsField(serializers.CharField):
    """A comma list of STATISTICS, each once."""

    def to_internal_value(self, data):
        asked = super().to_internal_value(data).split(",", len(STATISTICS))
        unknown = [statistic for statistic in asked if statistic not in STATISTICS]
        if unknown or len(set(asked)) != len(asked):
            raise serializers.ValidationError(f"{','.join(asked)[:80]!r}: ask one or more of "
                                              f"{', '.join(STATISTICS)}, each once")
        return asked


def _average() -> list[str]:
    return ["Average"]


def namespace_field(**kwargs) -> PatternField:
    return PatternField(NAMESPACE_ADAPTER, "metric namespace (eduCloud/Instance, eduCloud/Host or Custom/<name>)",
                        **kwargs)


def name_field(**kwargs) -> PatternField:
    return PatternField(METRIC_NAME_ADAPTER, "metric name (a letter, then letters, digits and _.-, at most 64)",
                        **kwargs)


class MetricListQuery(serializers.Serializer):
    """``GET metrics/``: the series of a namespace and name, when given, that have the dimensions of the filter."""

    namespace = namespace_field(required=False)
    name = name_field(required=False)
    dimensions = DimensionsField(help_text="Name=value,... (a bare Name: any value); series having these")
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIST, default=DEFAULT_LIST)
    offset = serializers.IntegerField(min_value=0, max_value=MAX_OFFSET, default=0)


class StatisticsQuery(serializers.Serializer):
    """``GET statistics/``: the datapoints of a metric per period over ``[start, end)``."""

    namespace = namespace_field()
    name = name_field()
    dimensions = DimensionsField(help_text="Name=value,...: with match=exact the series with exactly these, with "
                                           "match=filter every series having them, taken together")
    start = TimeField(help_text="epoch seconds or ISO 8601")
    end = TimeField(help_text="epoch seconds or ISO 8601, after start")
    period = serializers.IntegerField(min_value=60, max_value=MAX_PERIOD, help_text="seconds, a multiple of 60")
    statistics = StatisticsField(default=_average, help_text=f"comma list of {', '.join(STATISTICS)}")
    match = serializers.ChoiceField(("filter", "exact"), default="filter")

    def validate_period(self, value: int) -> int:
        if value % 60:
            raise serializers.ValidationError(f"{value} is not a multiple of 60 seconds")
        return value

    def validate(self, attrs: dict) -> dict:
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": [f"{attrs['end']:g} is not after start ({attrs['start']:g})"]})
        if attrs["match"] == "exact" and None in attrs["dimensions"].values():
            raise serializers.ValidationError({"dimensions": ["match=exact needs a value for every dimension"]})
        return attrs


def query_text(values: dict) -> dict[str, str]:
    """Validated query parameters as the text the other role's API reads back as the same values."""
    text = {}
    for key, value in values.items():
        if key == "dimensions":
            value = format_dimensions(value)
        elif key == "statistics":
            value = ",".join(value)
        elif isinstance(value, float):
            value = repr(value)
        text[key] = str(value)
    return text


class MetricRowSerializer(serializers.Serializer):
    namespace = serializers.CharField()
    name = serializers.CharField()
    dimensions = serializers.DictField(child=serializers.CharField())
    unit = serializers.CharField()


class MetricListSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    results = MetricRowSerializer(many=True)


class StatisticsSerializer(serializers.Serializer):
    namespace = serializers.CharField()
    name = serializers.CharField()
    dimensions = serializers.DictField(child=serializers.CharField(allow_null=True))
    period = serializers.IntegerField()
    unit = serializers.CharField()
    datapoints = serializers.ListField(child=serializers.DictField(child=serializers.FloatField()),
                                       help_text='[{"timestamp": epoch seconds, "<statistic>": value, ...}] by time')
