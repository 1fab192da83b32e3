"""The bodies of the watch role's API: custom metric data put by signed callers and administrators. The query
parameters and answers are ``luhyaapi.metric_params``' (the CLC reads the same ones before it forwards a query)."""

from __future__ import annotations

import math
import time
from typing import Annotated

from django.conf import settings
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema
from rest_framework import exceptions, serializers

from luhyaapi.metric_params import MAX_TIME, parse_time
from luhyaapi.metrics import (
    CUSTOM_PREFIX,
    MAX_SAMPLES,
    Dimensions,
    MetricName,
    MetricSample,
    MetricValue,
    Namespace,
    Unit,
)
from watch.services.store import DAY

# How far ahead of the watch's clock a put point may be (hosts' clocks differ a little; CloudWatch takes 2 hours).
MAX_AHEAD_SECONDS = 2 * 3600


def _epoch(value):
    """A datum's time as epoch seconds: a number as it is, a text as ``luhyaapi.metric_params.parse_time`` reads it."""
    if isinstance(value, str):
        try:
            return parse_time(value)
        except serializers.ValidationError as exc:
            raise ValueError(" ".join(map(str, exc.detail))) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("a time is epoch seconds or ISO 8601")
    return value


class MetricDatum(BaseModel):
    """One value of a custom metric: ``timestamp`` epoch seconds or ISO 8601 (UTC when it gives no offset)."""

    model_config = ConfigDict(extra="forbid")

    name: MetricName
    dimensions: Dimensions = Field(default_factory=dict)
    timestamp: Annotated[float, BeforeValidator(_epoch), WithJsonSchema(
        {"anyOf": [{"type": "number"}, {"type": "string"}], "description": "epoch seconds or ISO 8601"})]
    value: MetricValue
    unit: Unit = "None"


class MetricDataPut(BaseModel):
    """``POST metric-data/``: up to MAX_SAMPLES values of metrics of one ``Custom/<name>`` namespace."""

    model_config = ConfigDict(extra="forbid")

    namespace: Namespace
    metric_data: list[MetricDatum] = Field(min_length=1, max_length=MAX_SAMPLES)


def put_samples(data: MetricDataPut, now: float | None = None) -> list[MetricSample]:
    """The samples of a validated put: a namespace other than ``Custom/...`` is a 403 naming ``namespace`` (the
    cloud's own metrics come only from its hosts' samplers); a time not kept (older than ``watch.raw_days``) or
    more than MAX_AHEAD_SECONDS ahead is a 400 naming the datum's ``timestamp``."""
    if not data.namespace.startswith(CUSTOM_PREFIX):
        raise exceptions.PermissionDenied({"namespace": [f"{data.namespace} is the cloud's own: put metric data "
                                                         f"in a namespace {CUSTOM_PREFIX}<name>"]})
    now = time.time() if now is None else now
    oldest = now - settings.EDUCLOUD.watch_raw_days * DAY
    samples, wrong = [], {}
    for index, datum in enumerate(data.metric_data):
        moment = datum.timestamp
        if not (math.isfinite(moment) and oldest <= moment <= min(now + MAX_AHEAD_SECONDS, MAX_TIME)):
            wrong[f"metric_data.{index}.timestamp"] = [
                f"{moment!r} is not a time from {oldest:.0f} (watch.raw_days ago) to {MAX_AHEAD_SECONDS} s ahead"]
            continue
        try:
            samples.append(MetricSample(namespace=data.namespace, name=datum.name, dimensions=datum.dimensions,
                                        timestamp=moment, value=datum.value, unit=datum.unit))
        except ValidationError as exc:
            wrong[f"metric_data.{index}"] = [error["msg"] for error in exc.errors()]
    if wrong:
        raise exceptions.ValidationError(wrong)
    return samples
