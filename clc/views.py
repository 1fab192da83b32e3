"""Pages of the admin console (thin: data comes from the services, live parts refresh from the API)."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Model, Q, QuerySet
from django.shortcuts import get_object_or_404, redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.generic import CreateView, DetailView, ListView, TemplateView, UpdateView, View

from clc.forms import AuthorityForm, ImageAppFormSet, ImageForm
from clc.services import authz
from clc.services.health import system_health
from clc.services.images import ImageError, create_image, delete_image, users_of
from clc.services.registry import cloud_status
from clc.services.workers import clusters_workers
from luhyaapi.signing import HEADER_SIGNATURE
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import Image


def back_to_list(request, default: str):
    """Back to the list page an action was pressed on (``next``: its search and page), never to another site."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return redirect(target)
    return redirect(default)


class AuthorizedMixin(LoginRequiredMixin):
    """Every console page: logged in (else sent to log in; a host's signed call, which cannot log in, gets a 403),
    then the one rule of ``clc.services.authz``: the page's ``action`` on its ``resource_type`` (else 403); records
    are looked up among those the person may read (else 404) and the action is checked on the record (else 403)."""

    resource_type: str = ""
    action: str = "read"

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            if HEADER_SIGNATURE in request.headers:
                raise PermissionDenied("the console's pages are for people; hosts call the API")
            return self.handle_no_permission()
        self.actor = authz.actor_for(request.user)
        try:
            self.require_page()
        except authz.Denied as denied:
            raise PermissionDenied(str(denied)) from None
        return super().dispatch(request, *args, **kwargs)

    def require_page(self) -> None:
        """Raise ``authz.Denied`` unless the person may open the page at all: its action on its type."""
        authz.require_type(self.actor, self.action, self.resource_type)

    def readable(self, queryset: QuerySet) -> QuerySet:
        return authz.readable(self.actor, queryset)

    def check(self, obj: Model, action: str | None = None) -> Model:
        if not authz.may(self.actor, action or self.action, obj):
            raise PermissionDenied(f"you may not {action or self.action} this record")
        return obj

    def authorized(self, queryset: QuerySet, action: str | None = None, **lookup) -> Model:
        """The record matching ``lookup`` that the person may read (else 404) and may ``action`` (else 403)."""
        found = authz.findable(self.actor, queryset, action or self.action)
        return self.check(get_object_or_404(found, **lookup), action)

    def get_object(self, queryset=None):
        queryset = queryset if queryset is not None else self.get_queryset()
        return self.check(super().get_object(authz.findable(self.actor, queryset, self.action)))

    def get_form_kwargs(self):
        """Forms that take ``actor`` offer only the owner-groups and records in the person's authority."""
        kwargs = super().get_form_kwargs()
        if issubclass(self.get_form_class(), AuthorityForm):
            kwargs["actor"] = self.actor
        return kwargs

    def may_create_in(self, form, resource_type: str) -> bool:
        """For forms with an owner-group: False (and the form's error) unless the person may create there (no
        owner-group, where the form allows it, is the root)."""
        group = form.cleaned_data.get("owner_group")
        path = group.path if group is not None else authz.ROOT_PATH
        if not authz.allows(self.actor, "create", resource_type, path):
            form.add_error("owner_group", f"you may not create records in {path}")
            return False
        return True


class SystemStatusView(AuthorizedMixin, TemplateView):
    """System status: every service and host with state, last seen and resources, refreshed in place."""

    template_name = "clc/status.html"

    def dispatch(self, request, *args, **kwargs):
        # Servers need the root; a school's administrator sees their own PCs: the page is for either.
        root = authz.may_type(authz.actor_for(request.user), "read", Type.SERVER)
        self.resource_type = Type.SERVER if root else Type.HOST
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        root = self.resource_type == Type.SERVER
        return super().get_context_data(**kwargs) | {"status": cloud_status(self.actor), "show_services": root,
                                                     "health": system_health() if root else []}


class ImageListView(AuthorizedMixin, ListView):
    """Images with their current version and size; search by name, id or description."""

    template_name = "clc/images/list.html"
    paginate_by = 25
    resource_type = Type.IMAGE

    def get_queryset(self):
        images = self.readable(Image.objects.select_related("owner_group").prefetch_related("versions"))
        query = self.request.GET.get("q", "").strip()
        if query:
            images = images.filter(Q(name__icontains=query) | Q(image_id__icontains=query)
                                   | Q(description__icontains=query))
        return images

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"query": self.request.GET.get("q", "")}


class ImageAppsMixin:
    """An image's form with its published apps beside it (``ImageAppFormSet``): both valid, or both shown again."""

    def apps_formset(self) -> ImageAppFormSet:
        if not hasattr(self, "_apps"):
            data = self.request.POST if self.request.method == "POST" else None
            self._apps = ImageAppFormSet(data, instance=getattr(self, "object", None) or Image(), prefix="apps")
        return self._apps

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"apps": self.apps_formset()}

    def post(self, request, *args, **kwargs):
        self.object = self.get_object() if isinstance(self, UpdateView) else None
        form = self.get_form()
        if form.is_valid() and self.apps_formset().is_valid():
            return self.form_valid(form)
        return self.form_invalid(form)


class ImageCreateView(ImageAppsMixin, AuthorizedMixin, CreateView):
    """A new image's properties and published apps; its page then takes the file."""

    template_name = "clc/images/form.html"
    form_class = ImageForm
    resource_type, action = Type.IMAGE, "create"

    def form_valid(self, form):
        if not self.may_create_in(form, self.resource_type):
            return self.form_invalid(form)
        apps = [app.cleaned_data for app in self.apps_formset().forms
                if app.has_changed() and not app.cleaned_data.get("DELETE")]
        self.object = create_image(**form.cleaned_data, apps=apps)
        messages.success(self.request, f"Image {self.object.name} created: now upload its disk file.")
        return redirect("clc:image-detail", image_id=self.object.image_id)


class ImageUpdateView(ImageAppsMixin, AuthorizedMixin, UpdateView):
    """An image's properties and its published apps."""

    template_name = "clc/images/form.html"
    form_class = ImageForm
    slug_field = slug_url_kwarg = "image_id"
    queryset = Image.objects.all()
    resource_type, action = Type.IMAGE, "write"

    def form_valid(self, form):
        if "owner_group" in form.changed_data and not self.may_create_in(form, self.resource_type):
            return self.form_invalid(form)
        with transaction.atomic():
            response = super().form_valid(form)
            self.apps_formset().save()
        return response

    def get_success_url(self) -> str:
        messages.success(self.request, "Properties saved.")
        return self.object.get_absolute_url()


class ImageDetailView(AuthorizedMixin, DetailView):
    """An image's properties, versions and the upload of a new version (streamed, with progress and resume)."""

    resource_type = Type.IMAGE
    template_name = "clc/images/detail.html"
    slug_field = slug_url_kwarg = "image_id"
    queryset = Image.objects.select_related("owner_group").prefetch_related("versions", "apps")

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {
            "users": users_of(self.object, self.actor),
            # Same host: the browser sends the file to this origin, so no cross-origin request is needed.
            "walrus_local": settings.EDUCLOUD.has_role("walrus"),
        }


class ImageDeleteView(AuthorizedMixin, View):
    """Delete on POST; an image in use stays, with a message saying what uses it."""

    resource_type, action = Type.IMAGE, "delete"

    def post(self, request, image_id: str):
        image = self.authorized(Image.objects.all(), image_id=image_id)
        try:
            delete_image(image, self.actor)
        except ImageError as exc:
            messages.error(request, str(exc))
            return redirect("clc:image-detail", image_id=image_id)
        messages.success(request, f"Image {image.name} ({image_id}) deleted.")
        return redirect("clc:images")


class WorkersView(AuthorizedMixin, TemplateView):
    """The nodes' Celery workers of every cluster, as Celery's inspection finds them now (asked of each CC)."""

    template_name = "clc/workers.html"
    resource_type = Type.SERVER

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"clusters": clusters_workers()}
