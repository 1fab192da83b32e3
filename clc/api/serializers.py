"""Serializers of the cloud controller's API: validation of what people send, shape of what they get."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from clc.api.authz import actor, is_signed
from clc.services.authz import assignee_problem, groups_within
from clc.services.images import MAX_IMAGE_APPS, set_apps
from clc.services.instances import MONITORING_HELP, WATCH_SWITCHES, change_instance, switch_watching
from clc.services.lessons import weekdays_problem
from clc.services.pools import POOL_NAME_LENGTH
from luhyaapi.validators import NAME_RE, InvalidValue, validate_display_name, validate_ports
from luhyadb.models import (
    APP_NAME_LENGTH,
    MAX_DATA_DISK_MB,
    MAX_POOL_SIZE,
    DesktopPool,
    Image,
    ImageApp,
    ImageVersion,
    Instance,
    Lesson,
    OwnerGroup,
    Snapshot,
    VMType,
    Volume,
)


def _checked(check, value: str, field: str) -> str:
    try:
        return check(value, field)
    except InvalidValue as exc:
        raise serializers.ValidationError(exc.message) from None


class ImageVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImageVersion
        fields = ("number", "label", "size_bytes", "sha256", "format", "created")


def _app_messages(errors) -> list[str]:
    """The apps' errors as the API's refusals give every field's: a list of messages, each naming the app (its place
    in the list, from 1) and its field, e.g. "app 2, program: must be ..."."""
    def listed(found) -> list[str]:
        return [str(message) for message in (found if isinstance(found, list) else [found]) if message]

    if isinstance(errors, dict) and not all(str(key).isdigit() for key in errors):
        return [message for found in errors.values() for message in listed(found)]  # not a list of apps at all
    places = sorted((int(key), found) for key, found in errors.items()) if isinstance(errors, dict) else (
        enumerate(errors))
    messages = []
    for place, problem in places:
        if isinstance(problem, dict):
            messages += [f"app {place + 1}, {field}: {message}" for field, found in problem.items()
                         for message in listed(found)]
        else:
            messages += listed(problem)
    return messages


class ImageAppSerializer(serializers.ModelSerializer):
    """A published app of an image (RemoteApp): its name, program (``||alias`` or a path on the guest) and icon."""

    class Meta:
        model = ImageApp
        fields = ("name", "program", "icon")
        # One app name per image is checked on the image's whole list (``ImageSerializer.validate_apps``).
        validators = []

    def validate_name(self, value: str) -> str:
        return _checked(lambda text, field: validate_display_name(text, field, APP_NAME_LENGTH), value, "name")


class ImageSerializer(serializers.ModelSerializer):
    """An image's properties (the notes' list), whether its guests serve Remote Desktop (``rdp``), its published
    ``apps`` (given, they replace the image's list) and its versions; files are uploaded separately."""

    owner_group = serializers.SlugRelatedField(slug_field="path", queryset=OwnerGroup.objects.all())
    versions = ImageVersionSerializer(many=True, read_only=True)
    apps = ImageAppSerializer(many=True, required=False, max_length=MAX_IMAGE_APPS)

    class Meta:
        model = Image
        fields = ("image_id", "name", "os_type", "arch", "usage", "owner_group", "description", "version",
                  "pub_date", "size_bytes", "current_version", "rdp", "apps", "versions")
        read_only_fields = ("image_id", "version", "pub_date", "size_bytes", "current_version", "versions")

    def validate_name(self, value: str) -> str:
        return _checked(validate_display_name, value, "name")

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if isinstance(exc.detail, dict) and "apps" in exc.detail:
                exc.detail["apps"] = _app_messages(exc.detail["apps"])
            raise

    def validate_apps(self, value: list[dict]) -> list[dict]:
        names = [app["name"].casefold() for app in value]
        twice = sorted({app["name"] for app in value if names.count(app["name"].casefold()) > 1})
        if twice:
            raise serializers.ValidationError(f"each app's name once: {', '.join(twice)} more than once")
        return value

    def update(self, instance: Image, validated_data: dict) -> Image:
        apps = validated_data.pop("apps", None)
        with transaction.atomic():
            instance = super().update(instance, validated_data)
            if apps is not None:
                set_apps(instance, apps)
        return instance

    def validate_description(self, value: str) -> str:
        if "\x00" in value:
            raise serializers.ValidationError("may not contain NUL characters")
        return value


class UploadStartSerializer(serializers.Serializer):
    size = serializers.IntegerField(min_value=1)
    sha256 = serializers.RegexField(r"^[0-9a-f]{64}$", required=False, allow_blank=True)


class UploadCompleteSerializer(serializers.Serializer):
    upload_id = serializers.RegexField(r"^upl-[0-9a-f]{8}$")


class PrepareSerializer(serializers.Serializer):
    node = serializers.RegexField(NAME_RE.pattern)
    version = serializers.IntegerField(min_value=1, required=False)


class InstanceSerializer(serializers.ModelSerializer):
    """An instance: what it is made of (image, VM type, kind), where it runs and how to reach it."""

    image = serializers.SlugRelatedField(slug_field="image_id", queryset=Image.objects.all())
    vm_type = serializers.SlugRelatedField(slug_field="name", queryset=VMType.objects.all())
    owner_group = serializers.SlugRelatedField(slug_field="path", queryset=OwnerGroup.objects.all())
    services = serializers.ListField(required=False)  # validate_services: the same rule as the console's form
    pinned_node = serializers.RegexField(NAME_RE.pattern, required=False, allow_blank=True)  # blank: any node
    assigned_to = serializers.SlugRelatedField(slug_field="username", queryset=get_user_model().objects.all(),
                                               required=False, allow_null=True)
    tid = serializers.CharField(read_only=True)
    state_text = serializers.CharField(read_only=True)

    class Meta:
        model = Instance
        fields = ("instance_id", "name", "kind", "image", "vm_type", "owner_group", "persistent", "services",
                  "pinned_node", "assigned_to", "data_disk_mb", "monitoring", "restart_when_dead", "mac", "cluster",
                  "node", "state", "runs", "placing", "console_url", "guest_ip", "answering", "state_text", "access",
                  "message", "tid", "created", "updated")
        read_only_fields = ("instance_id", "mac", "cluster", "node", "state", "runs", "placing", "console_url",
                            "guest_ip", "answering", "access", "message", "tid", "created", "updated")
        extra_kwargs = {"monitoring": {"help_text": MONITORING_HELP}}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None and "assigned_to" in self.fields and not is_signed(request):
            # A person names only people of their own branch: anyone else "does not exist", and the refusal never
            # says where another branch's people are.
            people = Q(account__owner_group__in=groups_within(actor(request)))
            if isinstance(self.instance, Instance) and self.instance.assigned_to_id:
                people |= Q(pk=self.instance.assigned_to_id)
            self.fields["assigned_to"].queryset = get_user_model().objects.filter(people)

    def validate_name(self, value: str) -> str:
        return _checked(validate_display_name, value, "name")

    def validate_services(self, value: list) -> list[int]:
        return _checked(validate_ports, value, "services")

    def validate(self, attrs: dict) -> dict:
        owner = attrs.get("owner_group") or getattr(self.instance, "owner_group", None)
        assignee = attrs.get("assigned_to", getattr(self.instance, "assigned_to", None))
        problem = assignee_problem(assignee, owner.path) if owner is not None else ""
        if problem:
            raise serializers.ValidationError({"assigned_to": [problem]})
        return attrs

    def validate_image(self, value: Image) -> Image:
        if not value.current_version:
            raise serializers.ValidationError(f"image {value.image_id} has no file yet; upload one first")
        return value

    def update(self, instance: Instance, validated_data: dict) -> Instance:
        if validated_data and validated_data.keys() <= WATCH_SWITCHES:  # switched alone: at any time
            switch_watching(instance, **validated_data)
        elif not change_instance(instance, **validated_data):
            raise serializers.ValidationError({"state": [f"instance is {instance.state}; stop it before changing it"]})
        instance.refresh_from_db()
        return instance


class VMTypeSerializer(serializers.ModelSerializer):
    class Meta:
        model = VMType
        fields = ("name", "cpus", "memory_mb", "disk_gb")


class BuildStartSerializer(serializers.Serializer):
    """Start the image wizard: modify ``image``, or with ``new_name`` create a new image from it."""

    image = serializers.SlugRelatedField(slug_field="image_id", queryset=Image.objects.all())
    vm_type = serializers.SlugRelatedField(slug_field="name", queryset=VMType.objects.all())
    new_name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    node = serializers.RegexField(NAME_RE.pattern, required=False, allow_blank=True)  # blank: the scheduler picks

    def validate_new_name(self, value: str) -> str:
        return _checked(validate_display_name, value, "new_name") if value.strip() else ""


class DesktopPoolSerializer(serializers.ModelSerializer):
    """A pool: its image (and version, 0 = current), VM type, owner-group, size and how many desktops are up,
    free, and held by people now."""

    image = serializers.SlugRelatedField(slug_field="image_id", queryset=Image.objects.all())
    vm_type = serializers.SlugRelatedField(slug_field="name", queryset=VMType.objects.all())
    owner_group = serializers.SlugRelatedField(slug_field="path", queryset=OwnerGroup.objects.all())
    min_ready = serializers.IntegerField(min_value=0, max_value=MAX_POOL_SIZE, required=False, default=0)
    max_size = serializers.IntegerField(min_value=1, max_value=MAX_POOL_SIZE, required=False, default=30)
    image_version = serializers.IntegerField(min_value=0, required=False, default=0)
    data_disk_mb = serializers.IntegerField(min_value=0, max_value=MAX_DATA_DISK_MB, required=False, default=0,
                                            help_text="MiB of a personal data disk for each person (0: none)")
    desktops = serializers.SerializerMethodField()
    held = serializers.SerializerMethodField()

    class Meta:
        model = DesktopPool
        fields = ("pool_id", "name", "image", "image_version", "vm_type", "owner_group", "min_ready", "max_size",
                  "persistent", "data_disk_mb", "desktops", "held", "created", "updated")
        read_only_fields = ("pool_id", "created", "updated")

    def get_desktops(self, pool: DesktopPool) -> int:
        return pool.desktops.count()

    def get_held(self, pool: DesktopPool) -> int:
        return pool.desktops.filter(assigned_to__isnull=False).count()

    def validate_name(self, value: str) -> str:
        return _checked(lambda value, field: validate_display_name(value, field, POOL_NAME_LENGTH), value, "name")


@extend_schema_field({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 6}, "minItems": 1,
                      "maxItems": 7, "uniqueItems": True})
class WeekdaysField(serializers.JSONField):
    """Days of the week, 0 = Monday ... 6 = Sunday."""


class LessonSerializer(serializers.ModelSerializer):
    """A lesson of a pool's timetable: weekdays (0 = Monday ... 6 = Sunday), start and end (HH:MM, the cloud's time
    zone) and how many minutes before it the pool's desktops start."""

    pool = serializers.SlugRelatedField(slug_field="pool_id", queryset=DesktopPool.objects.all())
    # Checked as a whole (``weekdays_problem``), so that a refusal is one message about the field, not one per day.
    weekdays = WeekdaysField()
    prestart_minutes = serializers.IntegerField(min_value=0, max_value=120, required=False, default=10)

    class Meta:
        model = Lesson
        fields = ("lesson_id", "name", "pool", "weekdays", "starts", "ends", "prestart_minutes", "created",
                  "updated")
        read_only_fields = ("lesson_id", "created", "updated")

    def validate_name(self, value: str) -> str:
        return _checked(validate_display_name, value, "name")

    def validate_weekdays(self, value) -> list[int]:
        problem = weekdays_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return sorted(value)


# Sizes are bytes; anything past 2**53 (8 PiB, beyond any SC) is refused here rather than by the database.
MAX_VOLUME_BYTES = 2**53


class VolumeSerializer(serializers.ModelSerializer):
    """A volume: its name, owner-group, size in bytes (a whole number of MiB), the cluster whose storage controller
    keeps it, its state (``progress`` percent while ``creating``, the reason in ``message`` when ``failed``), what it
    was made from, the instance it is attached to and its snapshots. To make one: ``name``, ``owner_group``,
    ``size``, ``cluster`` (optional with one storage controller), and ``snapshot_id`` (``size`` then optional) or
    ``image`` with ``image_version`` (0 = current)."""

    owner_group = serializers.SlugRelatedField(slug_field="path", queryset=OwnerGroup.objects.all())
    size = serializers.IntegerField(source="size_bytes", min_value=1, max_value=MAX_VOLUME_BYTES, required=False,
                                    help_text="bytes, a whole number of MiB")
    cluster = serializers.CharField(max_length=64, required=False, allow_blank=True)
    snapshot_id = serializers.CharField(max_length=300, required=False, write_only=True,
                                        help_text="make it as a copy of this snapshot")
    image = serializers.SlugRelatedField(slug_field="image_id", queryset=Image.objects.all(), required=False,
                                         allow_null=True)
    image_version = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False, default=0)
    instance = serializers.SlugRelatedField(slug_field="instance_id", read_only=True)
    snapshots = serializers.SlugRelatedField(slug_field="snapshot_id", many=True, read_only=True)

    class Meta:
        model = Volume
        fields = ("volume_id", "name", "owner_group", "size", "cluster", "sc", "state", "progress", "message",
                  "source", "snapshot_id", "source_snapshot", "image", "image_version", "instance", "device",
                  "snapshots", "created", "updated")
        read_only_fields = ("volume_id", "sc", "state", "progress", "message", "source", "source_snapshot",
                            "instance", "device", "created", "updated")

    def validate_name(self, value: str) -> str:
        return _checked(validate_display_name, value, "name")


class VolumeChangeSerializer(serializers.ModelSerializer):
    """What can be changed of a volume: its name."""

    class Meta:
        model = Volume
        fields = ("name",)

    def validate_name(self, value: str) -> str:
        return _checked(validate_display_name, value, "name")


class SnapshotSerializer(serializers.ModelSerializer):
    """A snapshot: the volume it is of, its owner-group (the volume's), size in bytes and when it was taken."""

    volume_id = serializers.CharField(source="volume.volume_id", read_only=True)
    owner_group = serializers.CharField(source="owner_group.path", read_only=True)
    size = serializers.IntegerField(source="size_bytes", read_only=True)

    class Meta:
        model = Snapshot
        fields = ("snapshot_id", "volume_id", "owner_group", "size", "state", "created")
        read_only_fields = fields


class RestoreSerializer(serializers.Serializer):
    snapshot_id = serializers.CharField(max_length=300, help_text="a snapshot of this volume")


class AttachSerializer(serializers.Serializer):
    instance_id = serializers.CharField(max_length=300, help_text="a running instance of the volume's cluster that "
                                                                  "you may start or change")
