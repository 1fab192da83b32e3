"""Pages of the admin console (thin: data comes from the services, refreshes from the API)."""

from django.contrib.auth.mixins import LoginRequiredMixin, UserPassesTestMixin
from django.views.generic import TemplateView

from clc.services.registry import cloud_status


class StaffRequiredMixin(LoginRequiredMixin, UserPassesTestMixin):
    """Console pages are for administrators; others are sent to log in."""

    def test_func(self) -> bool:
        return self.request.user.is_staff


class SystemStatusView(StaffRequiredMixin, TemplateView):
    """System status: every service and host with state, last seen and resources, refreshed in place."""

    template_name = "clc/status.html"

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"status": cloud_status()}
