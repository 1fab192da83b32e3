"""The console's File shares page: what each home and owner-group share of the storage controllers holds against
its quota, as far as the person may see (``clc.services.shares.share_usage``): who fills the shares, before a
class's uploads meet a 507."""

from __future__ import annotations

from django.views.generic import TemplateView

from clc.services.shares import share_usage
from clc.views import AuthorizedMixin
from luhyadb.choices import ResourceTypeChoices as Type


class ShareUsageView(AuthorizedMixin, TemplateView):
    resource_type = Type.SHARE
    template_name = "clc/shares/usage.html"

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"usage": share_usage(self.actor)}
