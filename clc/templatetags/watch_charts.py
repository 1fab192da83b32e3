"""Template tags of the console's metric charts (``clc/_metric_charts.html``): the sample period from the settings
and whether the person may read a namespace's charts, so a page that includes them needs nothing in its view's
context."""

from __future__ import annotations

from django import template
from django.conf import settings

from clc.api.authz import actor
from clc.services import authz
from luhyadb.choices import ResourceTypeChoices as Type

register = template.Library()


@register.simple_tag
def watch_sample_seconds() -> int:
    """The watch's sample period (``watch.sample_seconds``): a metric gets one new point that often, so the charts
    reload that often, and a per-sample amount (bytes read in one sample) divided by it is a rate per second."""
    return settings.EDUCLOUD.watch_sample_seconds


@register.simple_tag(takes_context=True)
def may_chart(context, namespace: str) -> bool:
    """Whether the page's person may read the charts of ``namespace``: a host's metrics are for who may read servers
    (the cloud's administrators, as the metrics API rules); an instance's page is only shown to who may read it."""
    if namespace != "eduCloud/Host":
        return True
    request = context.get("request")
    if request is None:
        return False
    return authz.may_type(actor(request), "read", Type.SERVER)
