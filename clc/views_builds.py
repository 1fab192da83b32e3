"""Pages of the image wizard: start it from an image, then its three steps (prepare, run/stop with the console,
submit) on one page that follows the task live. Thin: every step is one call of ``clc.services.builds``."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.views.generic import FormView, TemplateView, View

from clc.forms import BuildStartForm
from clc.services.authz import may_build
from clc.services.builds import (
    begin_build,
    build_steps,
    cancel_build,
    prepare_build,
    run_build,
    stop_build,
    submit_build,
)
from clc.services.instances import InstanceError
from clc.services.portal import console_password
from clc.services.tasks import task_status
from clc.views import AuthorizedMixin
from luhyaapi.ids import InvalidId, TaskId
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import Image, Instance, TaskTransaction

STEPS = {"prepare": prepare_build, "run": run_build, "stop": stop_build, "submit": submit_build,
         "cancel": cancel_build}


class TaskIdConverter:
    """A task id ``srcid:dstid:insid`` in a URL; anything else is a 404 before a view runs."""

    regex = r"img-[0-9a-f]{8}:img-[0-9a-f]{8}:ins-[0-9a-f]{8}"

    def to_python(self, value: str) -> str:
        try:
            return str(TaskId.parse(value))
        except InvalidId as exc:
            raise ValueError(str(exc)) from None

    def to_url(self, value: str) -> str:
        return value


class BuildStartView(AuthorizedMixin, FormView):
    """``images/<id>/wizard/``: modify the image or create a new one from it, on a VM of the chosen size."""

    template_name = "clc/builds/start.html"
    form_class = BuildStartForm
    resource_type = Type.IMAGE

    def get(self, request, *args, **kwargs):
        self.image = self.authorized(Image.objects.all(), image_id=kwargs["image_id"])
        return super().get(request, *args, **kwargs)

    def post(self, request, *args, **kwargs):
        self.image = self.authorized(Image.objects.all(), image_id=kwargs["image_id"])
        return super().post(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"image": self.image}

    def form_valid(self, form):
        if not may_build(self.actor, self.image, create=bool(form.cleaned_data["new_name"])):
            form.add_error(None, "you may not change this image or create images in its owner-group")
            return self.form_invalid(form)
        try:
            task = begin_build(self.image, form.cleaned_data["vm_type"], new_name=form.cleaned_data["new_name"],
                               user=self.request.user.username)
        except InstanceError as exc:
            messages.error(self.request, str(exc))
            return redirect(self.image)
        messages.success(self.request, "Wizard started: prepare the image on a node first.")
        return redirect("clc:build", tid=task.tid)


class BuildDetailView(AuthorizedMixin, TemplateView):
    """``builds/<tid>/``: the three steps, the VM's console while it runs, the task's progress (refreshed live)."""

    template_name = "clc/builds/detail.html"
    resource_type = Type.TASK

    def get_context_data(self, **kwargs):
        task = self.authorized(TaskTransaction.objects.all(), tid=kwargs["tid"])
        instance = Instance.objects.filter(build_tid=task.tid).first()
        return super().get_context_data(**kwargs) | {
            "task": task, "status": task_status(task.tid), "instance": instance, "steps": build_steps(instance),
            "console_password": console_password(self.actor, instance) if instance else "",
            "source": Image.objects.filter(image_id=task.src_image_id).first(),
            "target": Image.objects.filter(image_id=task.dst_image_id).first(),
            "create": bool(task.runtime_option.get("create")), "new_name": task.runtime_option.get("name", ""),
            "api_url": f"/clc/api/1.0/builds/{task.tid}/"}


class BuildStepView(AuthorizedMixin, View):
    """``builds/<tid>/<step>/`` on POST: one wizard step; a refusal is shown on the wizard's page."""

    resource_type = Type.TASK

    def post(self, request, tid: str, step: str):
        task = self.authorized(TaskTransaction.objects.all(), tid=tid)
        source = get_object_or_404(Image, image_id=task.src_image_id)
        if not may_build(self.actor, source, create=bool(task.runtime_option.get("create"))):
            raise PermissionDenied("you may not change this image or create images in its owner-group")
        if step not in STEPS:
            messages.error(request, f"unknown step {step!r}")
            return redirect("clc:build", tid=tid)
        try:
            STEPS[step](task)
        except InstanceError as exc:
            messages.error(request, f"{step.capitalize()} was refused: {exc}")
        else:
            messages.success(request, f"{step.capitalize()} asked for; progress below.")
        return redirect("clc:build", tid=tid)
