"""Pages of the admin console for desktop pools and their timetables: the list, a pool's form (make, change), its
page (settings, desktops refreshed from the API, timetable with its lessons added and deleted there) and delete
(refused while a desktop of it runs). Thin adapters over ``clc.services.pools`` and ``clc.services.lessons``; who
may do what is the rule on type ``pool`` (``clc.services.authz``): a lesson is part of its pool, so adding or
deleting one is writing the pool."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.generic import FormView, ListView, TemplateView, View
from django.views.generic.base import TemplateResponseMixin

from clc.forms import AuthorityForm
from clc.services import authz
from clc.services.lessons import WEEKDAYS, create_lesson, delete_lesson, lesson_problems
from clc.services.pools import POOL_NAME_LENGTH, PoolError, change_pool, create_pool, delete_pool, pool_problems
from clc.views import AuthorizedMixin
from luhyaapi.ids import validate_id
from luhyaapi.validators import InvalidValue, validate_display_name
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import MAX_DATA_DISK_MB, MAX_POOL_SIZE, DesktopPool, Image

# The pool's desktops refresh this often on its page (as an instance's page does).
REFRESH_MS = 2000
# The settings ``pool_problems`` checks together.
CHECKED_SETTINGS = ("image", "image_version", "owner_group", "min_ready", "max_size", "data_disk_mb")


class PoolIdConverter:
    """A URL part that must be a pool's id: anything else does not match, so a malformed id is a plain 404."""

    regex = "[^/]+"
    kind = "pool"

    def to_python(self, value: str) -> str:
        return validate_id(value, self.kind)  # InvalidId is a ValueError, which Django takes as "no match"

    def to_url(self, value: str) -> str:
        return value


class LessonIdConverter(PoolIdConverter):
    """A URL part that must be a lesson's id."""

    kind = "lesson"


def _display_name(value: str, max_length: int = 100) -> str:
    try:
        return validate_display_name(value, "name", max_length)
    except InvalidValue as exc:
        raise forms.ValidationError(exc.message) from None


class PoolForm(AuthorityForm):
    """A pool's settings, checked by ``pool_problems`` (the API's rule too), each problem on its field. The
    owner-groups offered are those in the person's authority, the images those they may read (and, when changing a
    pool, the image it has)."""

    image_version = forms.IntegerField(min_value=0, initial=0, help_text="the image's version its desktops run; "
                                                                         "0 = the image's current one")
    min_ready = forms.IntegerField(label="Min ready", min_value=0, max_value=MAX_POOL_SIZE, initial=0,
                                   help_text="desktops kept running for people still to come")
    max_size = forms.IntegerField(label="Max size", min_value=1, max_value=MAX_POOL_SIZE, initial=30,
                                  help_text="desktops the pool may have in all")
    data_disk_mb = forms.IntegerField(label="Data disk (MiB)", min_value=0, max_value=MAX_DATA_DISK_MB, initial=0,
                                      required=False, help_text="a personal data disk of this size for each person, "
                                                                "kept across resets; 0 or empty: none")

    class Meta:
        model = DesktopPool
        fields = ("name", "owner_group", "image", "image_version", "vm_type", "min_ready", "max_size", "persistent",
                  "data_disk_mb")
        labels = {"vm_type": "VM type", "owner_group": "Owner-group"}

    def __init__(self, *args, actor: authz.Actor | None = None, pool: DesktopPool | None = None, **kwargs) -> None:
        super().__init__(*args, actor=actor, **kwargs)
        if pool is not None:
            # Saving other changes must not fail on an image the person may use in the pool but not read.
            images = self.fields["image"].queryset
            self.fields["image"].queryset = (images | Image.objects.filter(pk=pool.image_id)).distinct()

    def clean_name(self) -> str:
        return _display_name(self.cleaned_data["name"], POOL_NAME_LENGTH)

    def clean_data_disk_mb(self) -> int:
        return self.cleaned_data.get("data_disk_mb") or 0

    def clean(self):
        cleaned = super().clean()
        settings = {name: cleaned.get(name) for name in CHECKED_SETTINGS}
        if None not in settings.values():
            for field, message in pool_problems(**settings).items():
                if field not in self.errors:
                    self.add_error(field, message)
        return cleaned

    def refused(self, exc: PoolError) -> None:
        """Show a refusal of the service next to its field."""
        self.add_error(exc.field if exc.field in self.fields else None, str(exc))


class LessonForm(forms.Form):
    """A lesson of the pool's timetable, checked by ``lesson_problems`` (the API's rule too): weekdays, the hours it
    takes (the cloud's time zone, never overlapping another lesson of the pool) and how long before it the pool's
    desktops start."""

    name = forms.CharField(max_length=100)
    weekdays = forms.TypedMultipleChoiceField(coerce=int, choices=list(enumerate(WEEKDAYS)),
                                              widget=forms.CheckboxSelectMultiple,
                                              error_messages={"required": "choose at least one weekday"})
    starts = forms.TimeField(widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    ends = forms.TimeField(widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    prestart_minutes = forms.IntegerField(label="Start desktops", min_value=0, max_value=120, initial=10,
                                          help_text="minutes before the lesson")

    def __init__(self, *args, pool: DesktopPool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pool = pool

    def clean_name(self) -> str:
        return _display_name(self.cleaned_data["name"])

    def clean(self):
        cleaned = super().clean()
        if all(cleaned.get(name) is not None for name in ("weekdays", "starts", "ends")):
            for field, message in lesson_problems(pool=self.pool, weekdays=cleaned["weekdays"],
                                                  starts=cleaned["starts"], ends=cleaned["ends"]).items():
                if field not in self.errors:
                    self.add_error(field, message)
        return cleaned


class PoolListView(AuthorizedMixin, ListView):
    """The pools the person may read, each with its owner-group, image, size and desktops in use; search by name,
    id or image."""

    template_name = "clc/pools/list.html"
    paginate_by = 25
    resource_type = Type.POOL

    def get(self, request, *args, **kwargs):
        if authz.uses_portal(self.actor):
            return redirect("portal:desktops")  # a student gets a desktop from their pools there
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        pools = self.readable(DesktopPool.objects.select_related("image", "vm_type", "owner_group"))
        # Counting groups the rows, which drops the model's ordering: the pages need one.
        pools = pools.annotate(total=Count("desktops"),
                               in_use=Count("desktops", filter=Q(desktops__assigned_to__isnull=False)))
        pools = pools.order_by("name", "pool_id")
        query = self.request.GET.get("q", "").strip()
        if query:
            pools = pools.filter(Q(name__icontains=query) | Q(pool_id__icontains=query)
                                 | Q(image__name__icontains=query))
        return pools

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {
            "query": self.request.GET.get("q", ""),
            "may_create": authz.may_type(self.actor, "create", Type.POOL),
            "may_teach": authz.may_type(self.actor, "write", Type.INSTANCE),
        }


class PoolCreateView(AuthorizedMixin, FormView):
    """Make a pool in an owner-group where the person may create pools; its ready desktops start."""

    template_name = "clc/pools/form.html"
    form_class = PoolForm
    resource_type, action = Type.POOL, "create"

    def form_valid(self, form):
        if not self.may_create_in(form, self.resource_type):
            return self.form_invalid(form)
        try:
            pool = create_pool(**form.cleaned_data)
        except PoolError as exc:
            form.refused(exc)
            return self.form_invalid(form)
        messages.success(self.request, f"Pool {pool.name} ({pool.pool_id}) made: it keeps {pool.min_ready} "
                                       "desktop(s) ready; add its lessons below.")
        return redirect(pool)


class PoolMixin(AuthorizedMixin):
    resource_type = Type.POOL

    def pool(self) -> DesktopPool:
        return self.authorized(DesktopPool.objects.select_related("image", "vm_type", "owner_group"),
                               pool_id=self.kwargs["pool_id"])

    def page_context(self, pool: DesktopPool, lesson_form: LessonForm) -> dict:
        """The pool's page: its settings, the desktops of it the person may read, its timetable and what the person
        may do to it."""
        lessons = [{"lesson": lesson, "days": ", ".join(WEEKDAYS[day] for day in lesson.weekdays)}
                   for lesson in pool.lessons.all()]
        return {
            "object": pool,
            "desktops": authz.readable(self.actor, pool.desktops.select_related("assigned_to")),
            "lessons": lessons,
            "lesson_form": lesson_form,
            "may_write": authz.may(self.actor, "write", pool),
            "may_delete": authz.may(self.actor, "delete", pool),
            "live": {"desktops": reverse("clc-api:pool-desktops", args=[pool.pool_id]), "period": REFRESH_MS},
        }


class PoolUpdateView(PoolMixin, FormView):
    """Change a pool's settings; its desktops take a new image, version or VM type at their next run."""

    template_name = "clc/pools/form.html"
    form_class = PoolForm
    action = "write"

    def get_form_kwargs(self):
        self.object = self.pool()
        return super().get_form_kwargs() | {"pool": self.object}

    def get_initial(self):
        return {field: getattr(self.object, field) for field in PoolForm.Meta.fields}

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"object": self.object}

    def form_valid(self, form):
        if "owner_group" in form.changed_data and not self.may_create_in(form, self.resource_type):
            return self.form_invalid(form)
        try:
            change_pool(self.object, **form.cleaned_data)
        except PoolError as exc:
            form.refused(exc)
            return self.form_invalid(form)
        messages.success(self.request, f"Pool {self.object.name} saved; its desktops that run now keep what they "
                                       "run until they next start.")
        return redirect(self.object)


class PoolDetailView(PoolMixin, TemplateView):
    """A pool's settings, its desktops (state, who holds each, node; refreshed in place) and its timetable."""

    template_name = "clc/pools/detail.html"

    def get_context_data(self, **kwargs):
        pool = self.pool()
        return super().get_context_data(**kwargs) | self.page_context(pool, LessonForm(pool=pool))


class PoolDeleteView(PoolMixin, TemplateResponseMixin, View):
    """Ask for confirmation (GET), then delete the pool and its desktops (POST); refused, with a message on the
    pool's page, while a desktop of it runs."""

    template_name = "clc/pools/confirm_delete.html"
    action = "delete"

    def get(self, request, pool_id: str):
        pool = self.pool()
        return self.render_to_response({"object": pool, "desktop_count": pool.desktops.count()})

    def post(self, request, pool_id: str):
        pool = self.pool()
        try:
            delete_pool(pool)
        except PoolError as exc:
            messages.error(request, f"Not deleted: {exc}")
            return redirect(pool)
        messages.success(request, f"Pool {pool.name} ({pool_id}) deleted.")
        return redirect("clc:pools")


class LessonAddView(PoolMixin, TemplateResponseMixin, View):
    """``POST``: a lesson added to the pool's timetable; a bad one shows the pool's page again with each problem
    on its field."""

    template_name = "clc/pools/detail.html"
    action = "write"

    def post(self, request, pool_id: str):
        pool = self.pool()
        form = LessonForm(request.POST, pool=pool)
        if form.is_valid():
            try:
                lesson = create_lesson(pool=pool, **form.cleaned_data)
            except PoolError as exc:  # another lesson took the hours since the form was checked
                form.add_error(exc.field if exc.field in form.fields else None, str(exc))
            else:
                messages.success(request, f"Lesson {lesson.name} added to the timetable.")
                return redirect(pool)
        return self.render_to_response(self.page_context(pool, form))


class LessonDeleteView(PoolMixin, View):
    """``POST``: a lesson removed from the pool's timetable."""

    action = "write"

    def post(self, request, pool_id: str, lesson_id: str):
        pool = self.pool()
        lesson = get_object_or_404(pool.lessons, lesson_id=lesson_id)
        delete_lesson(lesson)
        messages.success(request, f"Lesson {lesson.name} removed from the timetable.")
        return redirect(pool)
