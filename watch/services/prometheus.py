"""The latest value of every series in Prometheus' text exposition format 0.0.4, for schools that scrape the watch
role into their own Prometheus and Grafana (``/watch/api/1.0/prometheus``, docs/watch.md "API").

A series becomes one gauge sample: its metric name is ``educloud_<namespace>_<name>`` in snake case
(``eduCloud/Instance`` ``CPUUtilization`` -> ``educloud_instance_cpu_utilization``, ``Custom/lab.app`` ``Jobs`` ->
``educloud_custom_lab_app_jobs``), its labels its dimensions in snake case (``InstanceId`` -> ``instance_id``), its
timestamp the point's (milliseconds). Only points of the last ``FRESH_SECONDS`` count: an instance stopped longer ago
than that drops out of the scrape, as Prometheus expects of a target that no longer has it.
"""

from __future__ import annotations

import re
import time

from watch.services.query import latest_points

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FRESH_SECONDS = 600

_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]")


def snake_case(text: str) -> str:
    """``CPUUtilization`` -> ``cpu_utilization``, ``lab.app-1`` -> ``lab_app_1``: what Prometheus names allow."""
    return _NOT_NAME.sub("_", _WORD_BOUNDARY.sub("_", text)).lower()


def metric_name(namespace: str, name: str) -> str:
    """The Prometheus name of a metric: ``eduCloud/Instance`` is ``instance``, ``Custom/x`` is ``custom_x``."""
    family, _, rest = namespace.partition("/")
    part = snake_case(rest) if family == "eduCloud" else f"{snake_case(family)}_{snake_case(rest)}"
    return f"educloud_{part}_{snake_case(name)}"


def escape_label_value(value: str) -> str:
    """A label value as the format quotes it: backslash, double quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(dimensions: dict[str, str]) -> str:
    """``{a="1",b="2"}`` from the dimensions; two names that meet in snake case (``InstanceID``, ``InstanceId``)
    keep both, the second with a suffix, since a label may appear once."""
    pairs: dict[str, str] = {}
    for name in sorted(dimensions):
        label = snake_case(name)
        while label in pairs:
            label += "_"
        pairs[label] = escape_label_value(dimensions[name])
    return "{" + ",".join(f'{label}="{value}"' for label, value in pairs.items()) + "}" if pairs else ""


def exposition(now: float | None = None) -> str:
    """The text a scrape gets: for each metric name one ``# HELP`` and ``# TYPE ... gauge`` line, then one sample
    line per series (``name{labels} value timestamp_ms``). Two series whose names and labels meet in snake case
    (Custom names ``a.b`` and ``a_b``) would be one sample twice, which a scrape refuses: the newer one is kept."""
    now = time.time() if now is None else now
    families: dict[str, tuple[str, dict[str, tuple[float, float]]]] = {}
    for point in latest_points(now - FRESH_SECONDS):
        name = metric_name(point["namespace"], point["name"])
        help_text = f"{point['namespace']} {point['name']} ({point['unit']})"
        _, samples = families.setdefault(name, (help_text, {}))
        labels = _labels(point["dimensions"])
        if labels not in samples or samples[labels][1] < point["time"]:
            samples[labels] = (point["value"], point["time"])
    lines = []
    for name in sorted(families):
        help_text, samples = families[name]
        lines += [f"# HELP {name} {escape_help(help_text)}", f"# TYPE {name} gauge"]
        lines += [f"{name}{labels} {value!r} {int(moment * 1000)}"
                  for labels, (value, moment) in sorted(samples.items())]
    return "\n".join(lines) + "\n" if lines else ""
