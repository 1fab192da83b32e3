"""Pages of the admin console (thin: data comes from the services, live parts refresh from the API)."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin, UserPassesTestMixin
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect
from django.views.generic import CreateView, DetailView, ListView, TemplateView, UpdateView, View

from clc.forms import ImageForm
from clc.services.images import ImageError, create_image, delete_image, users_of
from clc.services.registry import cloud_status
from luhyadb.models import Image


class StaffRequiredMixin(LoginRequiredMixin, UserPassesTestMixin):
    """Console pages are for administrators; others are sent to log in."""

    def test_func(self) -> bool:
        return self.request.user.is_staff


class SystemStatusView(StaffRequiredMixin, TemplateView):
    """System status: every service and host with state, last seen and resources, refreshed in place."""

    template_name = "clc/status.html"

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"status": cloud_status()}


class ImageListView(StaffRequiredMixin, ListView):
    """Images with their current version and size; search by name, id or description."""

    template_name = "clc/images/list.html"
    paginate_by = 25

    def get_queryset(self):
        images = Image.objects.select_related("owner_group").prefetch_related("versions")
        query = self.request.GET.get("q", "").strip()
        if query:
            images = images.filter(Q(name__icontains=query) | Q(image_id__icontains=query)
                                   | Q(description__icontains=query))
        return images

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"query": self.request.GET.get("q", "")}


class ImageCreateView(StaffRequiredMixin, CreateView):
    """A new image's properties; its page then takes the file."""

    template_name = "clc/images/form.html"
    form_class = ImageForm

    def form_valid(self, form):
        self.object = create_image(**form.cleaned_data)
        messages.success(self.request, f"Image {self.object.name} created: now upload its disk file.")
        return redirect("clc:image-detail", image_id=self.object.image_id)


class ImageUpdateView(StaffRequiredMixin, UpdateView):
    template_name = "clc/images/form.html"
    form_class = ImageForm
    slug_field = slug_url_kwarg = "image_id"
    queryset = Image.objects.all()

    def get_success_url(self) -> str:
        messages.success(self.request, "Properties saved.")
        return self.object.get_absolute_url()


class ImageDetailView(StaffRequiredMixin, DetailView):
    """An image's properties, versions and the upload of a new version (streamed, with progress and resume)."""

    template_name = "clc/images/detail.html"
    slug_field = slug_url_kwarg = "image_id"
    queryset = Image.objects.select_related("owner_group").prefetch_related("versions")

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {
            "users": users_of(self.object),
            # Same host: the browser sends the file to this origin, so no cross-origin request is needed.
            "walrus_local": settings.EDUCLOUD.has_role("walrus"),
        }


class ImageDeleteView(StaffRequiredMixin, View):
    """Delete on POST; an image in use stays, with a message saying what uses it."""

    def post(self, request, image_id: str):
        image = get_object_or_404(Image, image_id=image_id)
        try:
            delete_image(image)
        except ImageError as exc:
            messages.error(request, str(exc))
            return redirect("clc:image-detail", image_id=image_id)
        messages.success(request, f"Image {image.name} ({image_id}) deleted.")
        return redirect("clc:images")
