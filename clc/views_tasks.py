"""The admin console's task list: the tasks the person may read with phase, state, progress and message, filtered
by how they stand; the page refreshes its rows from the API's task list every 2 seconds. A task's page adds what
the nodes do for it: each command's live state as Celery shows it."""

from __future__ import annotations

from django.urls import reverse
from django.utils.http import urlencode
from django.views.generic import DetailView, ListView

from clc.services.hosts import MachineError
from clc.services.task_commands import task_commands
from clc.services.tasklist import TASK_FILTERS, find_tasks, standing
from clc.views import AuthorizedMixin
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import TaskTransaction

PAGE_SIZE = 25
SHOWN = (("", "All"), ("running", "Running"), ("failed", "Failed"), ("done", "Done"))


class TaskListView(AuthorizedMixin, ListView):
    """Tasks (newest change first) the person may read; ``?show=`` running, failed or done."""

    template_name = "clc/tasks/list.html"
    paginate_by = PAGE_SIZE
    resource_type = Type.TASK

    def show(self) -> str:
        show = self.request.GET.get("show", "")
        return show if show in TASK_FILTERS else ""

    def get_queryset(self):
        return self.readable(find_tasks(self.show()))

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        page = context["page_obj"]
        for task in page:
            task.standing = standing(task)
        query = {"limit": PAGE_SIZE, "offset": (page.number - 1) * PAGE_SIZE} | ({"show": self.show()}
                                                                                 if self.show() else {})
        return context | {"show": self.show(), "shown": SHOWN,
                          "source": f"{reverse('clc-api:task-list')}?{urlencode(query)}"}


class TaskDetailView(AuthorizedMixin, DetailView):
    """One task: its record (phase, state, progress, message) and what the nodes do for it, each command's live
    state as Celery shows it through the cluster's CC (``clc.services.task_commands``)."""

    template_name = "clc/tasks/detail.html"
    resource_type = Type.TASK
    slug_field = slug_url_kwarg = "tid"
    context_object_name = "task"

    def get_queryset(self):
        return TaskTransaction.objects.all()

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        task = context["task"]
        task.standing = standing(task)
        try:
            live, problem = task_commands(task), ""
        except MachineError as exc:
            live, problem = None, str(exc)
        return context | {"live": live, "problem": problem}
