"""What roles say to each other about metrics (issue 17, the watch role): one sample is a value of a named metric in a
namespace, for a set of dimensions, at a time, CloudWatch-shaped.

- Namespaces: ``eduCloud/Instance`` (an NC's sample of each running instance, dimensions ``InstanceId``,
  ``NodeName``, ``Cluster``, ``ImageId``, ``OwnerGroup``), ``eduCloud/Host`` (each role host's own, dimensions
  ``HostName``, ``Cluster``, ``Role`` when one), and ``Custom/<name>`` for metric data put by signed callers and
  administrators.
- Names and units: ``INSTANCE_METRICS`` and ``HOST_METRICS`` below. Counters (bytes, operations) are per sample: what
  happened since the previous sample (a node turns the driver's since-start counters into these), so a sum over an
  hour is the hour's traffic.

Everything here may reach SQL only as parameters and a page only escaped, but names and dimensions are still held to
a small alphabet, so that a sample cannot smuggle anything into a query string, a Prometheus line or a log line.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

INSTANCE_NAMESPACE = "eduCloud/Instance"
HOST_NAMESPACE = "eduCloud/Host"
CUSTOM_PREFIX = "Custom/"

Unit = Literal["Percent", "Bytes", "Count", "Seconds", "None"]

# name -> unit. Percent of the instance's own vCPUs; memory the guest's resident bytes as the hypervisor sees it.
INSTANCE_METRICS: dict[str, Unit] = {
    "CPUUtilization": "Percent", "MemoryUsed": "Bytes", "DiskReadBytes": "Bytes", "DiskWriteBytes": "Bytes",
    "DiskReadOps": "Count", "DiskWriteOps": "Count", "NetworkIn": "Bytes", "NetworkOut": "Bytes", "Alive": "None",
}
HOST_METRICS: dict[str, Unit] = {
    "CPUUtilization": "Percent", "MemoryUsed": "Bytes", "MemoryTotal": "Bytes", "DiskUsed": "Bytes",
    "DiskTotal": "Bytes", "NetworkIn": "Bytes", "NetworkOut": "Bytes", "LoadAverage": "None",
}
DIMENSION_NAMES = ("InstanceId", "NodeName", "Cluster", "ImageId", "OwnerGroup", "HostName", "Role")
MAX_DIMENSIONS = 10
# CloudWatch's limits: a request's datapoints, and a sample batch.
MAX_DATAPOINTS = 1440
MAX_SAMPLES = 1000
STATISTICS = ("Average", "Minimum", "Maximum", "Sum", "SampleCount")
# The dimensions whose every value the watch store also rolls up across all the series that have it (the
# cluster-wide average of an instance metric): each costs a few rows per batch and value (docs/watch.md).
AGGREGATED_DIMENSIONS = ("Cluster",)

Namespace = Annotated[str, Field(pattern=r"^(eduCloud/(Instance|Host)|Custom/[A-Za-z0-9_.-]{1,64})$")]
MetricName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")]
DimensionName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9]{0,31}$")]
DimensionValue = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
Dimensions = Annotated[dict[DimensionName, DimensionValue], Field(max_length=MAX_DIMENSIONS)]
# The same rules for one value at a time (query parameters, API fields, the store's arguments).
NAMESPACE_ADAPTER = TypeAdapter(Namespace)
METRIC_NAME_ADAPTER = TypeAdapter(MetricName)
DIMENSION_NAME_ADAPTER = TypeAdapter(DimensionName)
DIMENSION_VALUE_ADAPTER = TypeAdapter(DimensionValue)


def conforms(adapter: TypeAdapter, value: object) -> bool:
    """Whether ``value`` passes ``adapter`` (one of the adapters above)."""
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("a metric value is a finite number")
    return value


# A metric's value: any finite number (NaN and infinities have no sum, average or place in a SQL column).
MetricValue = Annotated[float, AfterValidator(_finite)]


class MetricSample(BaseModel):
    """One value of metric ``name`` in ``namespace`` for ``dimensions`` at ``timestamp`` (epoch seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: Namespace
    name: MetricName
    dimensions: Dimensions = Field(default_factory=dict)
    timestamp: float = Field(ge=0)
    value: MetricValue
    unit: Unit = "None"


def dimensions_key(dimensions: dict[str, str]) -> str:
    """One text for a set of dimensions, the same whatever their order (``Cluster=c1|InstanceId=ins-1``): how the
    store keys a series."""
    return "|".join(f"{name}={dimensions[name]}" for name in sorted(dimensions))
