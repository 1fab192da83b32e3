"""Models of the cloud's records (the notes' eduServer, host, image, instance and task tables, owner-groups, VM types).

Names and addresses are validated on the way in (``full_clean`` and the API serializers) with the same patterns
``luhyaapi.validators`` applies before anything reaches a command line.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models

from luhyaapi.ids import InvalidId, validate_id
from luhyaapi.validators import InvalidValue, validate_display_name, validate_mac, validate_name, validate_owner_path
from luhyadb.choices import (
    AccountRoleChoices,
    ArchChoices,
    HostKindChoices,
    InstanceKindChoices,
    InstanceStateChoices,
    KeyStateChoices,
    LivenessChoices,
    LoginThrottleKindChoices,
    NetworkModeChoices,
    OsTypeChoices,
    PhaseChoices,
    PlacingChoices,
    ResourceTypeChoices,
    RoleChoices,
    SnapshotStateChoices,
    UsageChoices,
    VolumeSourceChoices,
    VolumeStateChoices,
)


def _as_django_error(check, value, *args) -> None:
    try:
        check(value, *args)
    except (InvalidValue, InvalidId) as exc:
        raise ValidationError(str(exc)) from None


def name_validator(value: str) -> None:
    _as_django_error(validate_name, value)


def mac_validator(value: str) -> None:
    _as_django_error(validate_mac, value)


def owner_path_validator(value: str) -> None:
    _as_django_error(validate_owner_path, value)


def validate_image_id(value: str) -> None:
    _as_django_error(validate_id, value, "image")


def validate_instance_id(value: str) -> None:
    _as_django_error(validate_id, value, "instance")


def validate_pool_id(value: str) -> None:
    _as_django_error(validate_id, value, "pool")


def validate_lesson_id(value: str) -> None:
    _as_django_error(validate_id, value, "lesson")


def validate_volume_id(value: str) -> None:
    _as_django_error(validate_id, value, "volume")


def validate_snapshot_id(value: str) -> None:
    _as_django_error(validate_id, value, "snapshot")


# A published app's program: a RemoteApp alias (``||notepad``), or an absolute path on the guest (``C:\...``,
# ``%ProgramFiles%\...`` or ``/usr/bin/...``); never a control character (it is one line of a .rdp file) nor a
# character no Windows path has (it is shown quoted on an rdesktop command line).
PROGRAM_RE = re.compile(r"\|\|[A-Za-z0-9_.-]{1,64}"
                        r"|(?:[A-Za-z]:\\|%[A-Za-z][A-Za-z0-9_]{0,30}%\\|/)[^\x00-\x1f\x7f-\x9f\u2028\u2029\"<>|*?]{0,250}")
APP_NAME_LENGTH = 60


def app_name_validator(value: str) -> None:
    try:
        validate_display_name(value, "name", APP_NAME_LENGTH)
    except InvalidValue as exc:
        raise ValidationError(exc.message) from None


def program_validator(value: str) -> None:
    if not isinstance(value, str) or not PROGRAM_RE.fullmatch(value):
        raise ValidationError("must be a RemoteApp alias (||notepad) or an absolute path on the guest "
                              "(C:\\...\\app.exe, %ProgramFiles%\\...\\app.exe or /usr/bin/app) of at most 255 "
                              "characters, with no control characters and none of \" < > | * ?")


class OwnerGroup(models.Model):
    """An owner-group: a dotted authority path (``edu.cloud.school.class``); accounts of a path reach its subtree."""

    name = models.CharField(max_length=100, unique=True)
    path = models.CharField(max_length=255, unique=True, validators=[owner_path_validator])
    description = models.TextField(blank=True)

    class Meta:
        ordering = ("path",)

    def __str__(self) -> str:
        return f"{self.name} ({self.path})"


class OwnerGroupPermission(models.Model):
    """What an owner-group may do with one resource type: any of read/write/execute/create/delete (all = full)."""

    owner_group = models.ForeignKey(OwnerGroup, on_delete=models.CASCADE, related_name="permissions")
    resource_type = models.CharField(max_length=20, choices=ResourceTypeChoices.choices)
    read = models.BooleanField(default=False)
    write = models.BooleanField(default=False)
    execute = models.BooleanField(default=False)
    create = models.BooleanField(default=False)
    delete = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("owner_group", "resource_type"), name="one_permission_per_type")]
        ordering = ("owner_group", "resource_type")

    @property
    def is_full(self) -> bool:
        return self.read and self.write and self.execute and self.create and self.delete

    def __str__(self) -> str:
        flags = ("read", "write", "execute", "create", "delete")
        bits = "".join(flag[0] if getattr(self, flag) else "-" for flag in flags)
        return f"{self.owner_group.path}: {self.resource_type} {bits}"


class Account(models.Model):
    """A person's place in the cloud: the owner-group whose subtree they reach and their role. Every login of the
    console, the portal or the API has one (``clc.services.authz`` decides with it); a superuser without one is a
    super administrator of the whole cloud."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account")
    owner_group = models.ForeignKey(OwnerGroup, on_delete=models.PROTECT, related_name="accounts")
    role = models.CharField(max_length=10, choices=AccountRoleChoices.choices, default=AccountRoleChoices.USER)

    class Meta:
        ordering = ("user__username",)

    def __str__(self) -> str:
        return f"{self.user.username} ({self.role} of {self.owner_group.path})"


class Server(models.Model):
    """A server of one role (clc, walrus, cc, nc, sc, watch). Added when it first registers or heartbeats;
    ``state`` goes offline after the configured number of missed heartbeats."""

    name = models.CharField(max_length=63, validators=[name_validator])
    role = models.CharField(max_length=10, choices=RoleChoices.choices)
    ip = models.GenericIPAddressField()
    mac = models.CharField(max_length=17, blank=True, validators=[mac_validator])
    cluster = models.CharField(max_length=63, validators=[name_validator])
    api_url = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=10, choices=LivenessChoices.choices, default=LivenessChoices.ONLINE)
    last_seen = models.DateTimeField(null=True, blank=True)
    heartbeat_seconds = models.FloatField(default=300)
    cpus = models.FloatField(default=0)
    memory_mb = models.BigIntegerField(default=0)
    disk_mb = models.BigIntegerField(default=0)
    free_cpus = models.FloatField(default=0)
    free_memory_mb = models.BigIntegerField(default=0)
    free_disk_mb = models.BigIntegerField(default=0)
    cpu_usage = models.FloatField(default=0)
    registered_at = models.DateTimeField(auto_now_add=True)
    draining = models.BooleanField(
        default=False, help_text="a node controller being removed: its cluster places no new instance on it")

    class Meta:
        constraints = [models.UniqueConstraint(fields=("role", "name"), name="one_server_per_role_and_name")]
        ordering = ("role", "name")
        indexes = [models.Index(fields=("state", "role"))]

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"


class Host(models.Model):
    """A classroom PC that runs local desktops (LVD); it adds itself when it powers on."""

    name = models.CharField(max_length=63, validators=[name_validator])
    mac = models.CharField(max_length=17, unique=True, validators=[mac_validator])
    ip = models.GenericIPAddressField()
    location = models.CharField(max_length=200, blank=True)
    cluster = models.CharField(max_length=63, validators=[name_validator])
    owner_group = models.ForeignKey(OwnerGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="hosts")
    memory_mb = models.BigIntegerField(default=0)
    disk_mb = models.BigIntegerField(default=0)
    auto_sync = models.BooleanField(default=True)
    auto_poweroff = models.BooleanField(default=False)
    offline_enabled = models.BooleanField(default=True)
    is_pad = models.BooleanField(default=False)
    state = models.CharField(max_length=10, choices=LivenessChoices.choices, default=LivenessChoices.ONLINE)
    last_seen = models.DateTimeField(null=True, blank=True)
    heartbeat_seconds = models.FloatField(default=300)

    class Meta:
        ordering = ("cluster", "name")

    def __str__(self) -> str:
        return f"{self.name} ({self.mac})"


class VMType(models.Model):
    """A named size of VM: CPUs, memory, disk."""

    name = models.CharField(max_length=40, unique=True)
    cpus = models.PositiveSmallIntegerField()
    memory_mb = models.PositiveIntegerField()
    disk_gb = models.PositiveIntegerField()

    class Meta:
        ordering = ("memory_mb", "cpus")
        verbose_name = "VM type"

    def __str__(self) -> str:
        return f"{self.name} ({self.cpus} CPU, {self.memory_mb} MB, {self.disk_gb} GB)"


class Image(models.Model):
    """A VM image with the notes' properties. ``version`` is bumped on every submit of a modified image."""

    image_id = models.CharField(max_length=12, unique=True, validators=[validate_image_id])
    name = models.CharField(max_length=100)
    os_type = models.CharField(max_length=20, choices=OsTypeChoices.choices, default=OsTypeChoices.LINUX)
    arch = models.PositiveSmallIntegerField(choices=ArchChoices.choices, default=ArchChoices.BITS64)
    usage = models.CharField(max_length=10, choices=UsageChoices.choices, default=UsageChoices.DESKTOP)
    owner_group = models.ForeignKey(OwnerGroup, on_delete=models.PROTECT, related_name="images")
    description = models.TextField(blank=True)
    version = models.CharField(max_length=20, default="1.0.0")
    pub_date = models.DateTimeField(auto_now_add=True)
    size_bytes = models.BigIntegerField(default=0)
    current_version = models.PositiveIntegerField(default=0, help_text="walrus version in use; 0 = no file yet")
    rdp = models.BooleanField(default=False, verbose_name="serves Remote Desktop (RDP)",
                              help_text="its guests serve RDP on port 3389 (Windows with Remote Desktop on): the "
                                        "cloud forwards it and the portal offers a .rdp file; the VNC console is "
                                        "always there")

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return f"{self.name} {self.version} ({self.image_id})"

    def get_absolute_url(self) -> str:
        return f"/clc/images/{self.image_id}/"


class ImageVersion(models.Model):
    """One file version of an image as stored in walrus; the image's ``current_version`` names the one in use."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    label = models.CharField(max_length=20, help_text="the notes' version text, e.g. 1.0.3")
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    format = models.CharField(max_length=10)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("image", "number"), name="one_image_version_per_number")]
        ordering = ("image", "-number")

    def __str__(self) -> str:
        return f"{self.image.image_id} v{self.number} ({self.label})"


class ImageApp(models.Model):
    """An application its image's guests publish (RemoteApp, the notes' SeamlessRDP): the portal offers it to the
    people who may use a desktop of the image, as a RemoteApp .rdp file and an rdesktop command line. ``program`` is
    a RemoteApp alias (``||name``) or the program's path on the guest; ``icon`` an optional picture's URL."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="apps")
    name = models.CharField(max_length=APP_NAME_LENGTH, validators=[app_name_validator])
    program = models.CharField(max_length=255, validators=[program_validator],
                               help_text="||alias, or the path on the guest, e.g. C:\\Windows\\notepad.exe")
    icon = models.CharField(max_length=200, blank=True, validators=[URLValidator(schemes=("http", "https"))],
                            help_text="the address of a picture of it (optional)")

    class Meta:
        ordering = ("image", "name")
        constraints = [models.UniqueConstraint(fields=("image", "name"), name="one_app_name_per_image")]
        verbose_name = "published app"

    def __str__(self) -> str:
        return f"{self.name} ({self.image.image_id})"


# A personal data disk asked of a desktop pool or a remote desktop: 1 TiB at most.
MAX_DATA_DISK_MB = 1024 * 1024


class Instance(models.Model):
    """A defined VM (virtual server, remote or local desktop) made from an image; persistent ones keep their disk."""

    instance_id = models.CharField(max_length=12, unique=True, validators=[validate_instance_id])
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=3, choices=InstanceKindChoices.choices)
    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="instances")
    vm_type = models.ForeignKey(VMType, on_delete=models.PROTECT, related_name="instances")
    owner_group = models.ForeignKey(OwnerGroup, on_delete=models.PROTECT, related_name="instances")
    persistent = models.BooleanField(default=False)
    mac = models.CharField(max_length=17, blank=True, validators=[mac_validator],
                           help_text="the first NIC's address, kept for DHCP reservations")
    services = models.JSONField(default=list, blank=True, help_text="guest TCP ports to reach from outside, e.g. [80]")
    pinned_node = models.CharField(max_length=63, blank=True, validators=[name_validator],
                                   help_text="run only on this node controller")
    assigned_to = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="desktops",
                                    help_text="the person whose desktop this is (users see only theirs)")
    data_disk_mb = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(MAX_DATA_DISK_MB)],
                                               help_text="MiB of a personal data disk for the person it is assigned "
                                                         "to (0: none)")
    pool = models.ForeignKey("DesktopPool", null=True, blank=True, on_delete=models.PROTECT, related_name="desktops",
                             help_text="the desktop pool it belongs to, which hands it out (clc.services.pools)")
    image_version = models.PositiveIntegerField(default=0, help_text="the walrus version it runs; 0 = the image's "
                                                                     "current one at each run")
    last_activity = models.DateTimeField(null=True, blank=True,
                                         help_text="last run or console connection; idle desktops are stopped")
    cluster = models.CharField(max_length=63, blank=True, validators=[name_validator])
    node = models.CharField(max_length=63, blank=True, validators=[name_validator])
    state = models.CharField(max_length=12, choices=InstanceStateChoices.choices, default=InstanceStateChoices.DEFINED)
    runs = models.PositiveIntegerField(default=0, help_text="how many times it was asked to run")
    placing = models.CharField(max_length=6, choices=PlacingChoices.choices, default=PlacingChoices.NONE, blank=True,
                               help_text="while the run waits for a cluster to take it (clc.services.instances)")
    asked_at = models.DateTimeField(null=True, blank=True,
                                    help_text="when a cluster was last asked to take the waiting run")
    build_tid = models.CharField(max_length=40, blank=True, help_text="set on the VM of an image wizard's task")
    console_url = models.CharField(max_length=200, blank=True)
    console_password = models.CharField(max_length=8, blank=True,
                                        help_text="the VNC console's password of the current run (new for each run)")
    guest_ip = models.CharField(max_length=45, blank=True)
    monitoring = models.BooleanField(default=True, help_text="its node samples its CPU, memory, disk, network and "
                                     "liveness for the watch role (the notes' enable/disable monitoring)")
    answering = models.BooleanField(default=True, help_text="false: running, but its guest showed no sign of life "
                                                            "within the node's time limit")
    access = models.JSONField(default=dict, blank=True, help_text="how to reach its services, by name")
    # The guest watchdog and the alarms' reboot (issue 17, clc.services.alarm_actions): run numbers, not flags, so a
    # value left from an earlier run never acts on a later one.
    restart_when_dead = models.BooleanField(default=False, help_text="start it again when its guest stops or dies "
                                            "from inside (the guest watchdog: its liveness metric fell to 0)")
    restart_after_run = models.PositiveIntegerField(default=0, help_text="start it again once this run of it is "
                                                    "reported stopped (a reboot, or the watchdog); 0: no")
    died_run = models.PositiveIntegerField(default=0, help_text="the last run that ended while it should have run "
                                           "(stopped from inside the guest, nobody having asked); 0: none")
    message = models.TextField(blank=True, help_text="why the last step failed, or what the scheduler said")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return f"{self.name} ({self.instance_id})"

    @property
    def tid(self) -> str:
        """The notes' task id: ``img:img:insid`` for running an instance, ``src:dst:insid`` for a wizard's VM."""
        return self.build_tid or f"{self.image.image_id}:{self.image.image_id}:{self.instance_id}"

    def get_absolute_url(self) -> str:
        return f"/clc/instances/{self.instance_id}/"

    NOT_ANSWERING_HINT = ("its VM runs, but the guest gave no sign of being up in time (no DHCP lease, no word from "
                          "the guest, no service answering): open its console to see what it shows")

    @property
    def state_text(self) -> str:
        """The state as the pages show it: "Running, not answering" for a VM whose guest never showed it is up;
        "Scheduled, waiting for a cluster" for a run no cluster has taken yet (``placing``)."""
        if self.state == InstanceStateChoices.RUNNING and not self.answering:
            return "Running, not answering"
        if self.state == InstanceStateChoices.SCHEDULED and self.placing:
            return "Scheduled, waiting for a cluster"
        return self.get_state_display()


MAX_POOL_SIZE = 500


class DesktopPool(models.Model):
    """Remote desktops of one image for one owner-group, handed out to its people as they come, as a desktop
    broker's pool does (``clc.services.pools``): ``min_ready`` of them kept running and free, at most ``max_size`` in
    all. A desktop of a non-persistent pool goes back to the pool when it stops, its disk made again from the image at
    its next run; a persistent pool's desktop stays its person's, disk and all."""

    pool_id = models.CharField(max_length=12, unique=True, validators=[validate_pool_id])
    name = models.CharField(max_length=100)
    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="pools")
    image_version = models.PositiveIntegerField(default=0, help_text="the walrus version its desktops run; 0 = the "
                                                                     "image's current one")
    vm_type = models.ForeignKey(VMType, on_delete=models.PROTECT, related_name="pools")
    owner_group = models.ForeignKey(OwnerGroup, on_delete=models.PROTECT, related_name="pools")
    min_ready = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(MAX_POOL_SIZE)],
                                                 help_text="desktops kept running for people still to come")
    max_size = models.PositiveSmallIntegerField(default=30, validators=[MinValueValidator(1),
                                                                        MaxValueValidator(MAX_POOL_SIZE)],
                                                help_text="desktops the pool may have in all")
    persistent = models.BooleanField(default=False, help_text="each person keeps their desktop and its disk")
    data_disk_mb = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(MAX_DATA_DISK_MB)],
                                               help_text="MiB of a personal data disk for each person (0: none)")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)
        constraints = [models.CheckConstraint(condition=models.Q(min_ready__lte=models.F("max_size")),
                                              name="pool_min_ready_within_max_size")]

    def __str__(self) -> str:
        return f"{self.name} ({self.pool_id})"

    def get_absolute_url(self) -> str:
        return f"/clc/pools/{self.pool_id}/"


class Lesson(models.Model):
    """A lesson of the timetable: on ``weekdays`` (0 Monday ... 6 Sunday) from ``starts`` to ``ends`` (the cloud's
    time zone) a class uses its pool; the pool's desktops are started ``prestart_minutes`` before it and the idle ones
    stopped after it (``clc.services.lessons``)."""

    lesson_id = models.CharField(max_length=12, unique=True, validators=[validate_lesson_id])
    name = models.CharField(max_length=100)
    pool = models.ForeignKey(DesktopPool, on_delete=models.CASCADE, related_name="lessons")
    weekdays = models.JSONField(default=list, help_text="days of the week it takes place, 0 = Monday ... 6 = Sunday")
    starts = models.TimeField()
    ends = models.TimeField()
    prestart_minutes = models.PositiveSmallIntegerField(default=10, validators=[MaxValueValidator(120)],
                                                        help_text="how long before the lesson its desktops start")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("starts", "name")
        constraints = [models.CheckConstraint(condition=models.Q(starts__lt=models.F("ends")),
                                              name="lesson_starts_before_it_ends")]

    def __str__(self) -> str:
        return f"{self.name} ({self.lesson_id})"


class Volume(models.Model):
    """A volume of the cloud: a disk kept by the storage controller ``sc`` of ``cluster`` (which holds its file and
    the truth about it; ``clc.services.volumes`` refreshes ``state``, ``progress`` and ``message`` from it), owned by
    an owner-group and ruled as type ``volume``. Made empty, from a snapshot (``source_snapshot``) or from an image
    version (``image``, ``image_version``); ``instance`` and ``device`` say where it is attached, if anywhere."""

    volume_id = models.CharField(max_length=12, unique=True, validators=[validate_volume_id])
    name = models.CharField(max_length=100)
    owner_group = models.ForeignKey(OwnerGroup, on_delete=models.PROTECT, related_name="volumes")
    size_bytes = models.BigIntegerField(help_text="bytes (a whole number of MiB)")
    cluster = models.CharField(max_length=64, help_text="the cluster of its storage controller")
    sc = models.CharField(max_length=63, help_text="the name of the storage controller keeping it")
    state = models.CharField(max_length=10, choices=VolumeStateChoices.choices, default=VolumeStateChoices.CREATING)
    message = models.TextField(blank=True, help_text="why it failed, or what its storage controller last said")
    progress = models.PositiveSmallIntegerField(default=100, validators=[MaxValueValidator(100)],
                                                help_text="percent made, while creating")
    source = models.CharField(max_length=10, choices=VolumeSourceChoices.choices, default=VolumeSourceChoices.EMPTY)
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="volumes")
    image_version = models.PositiveIntegerField(default=0, help_text="the image version it was made from")
    source_snapshot = models.CharField(max_length=12, blank=True, help_text="the snapshot it was made from")
    instance = models.ForeignKey(Instance, null=True, blank=True, on_delete=models.SET_NULL, related_name="volumes")
    device = models.CharField(max_length=32, blank=True, help_text="how the instance sees it, while attached")
    holder = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="personal_volumes",
                               help_text="the person whose data disk it is (a personal volume), if anyone's")
    personal = models.BooleanField(default=False, help_text="the holder's data disk in this cluster: attached to "
                                                            "whichever desktop they get, kept across resets")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name", "volume_id")
        constraints = [models.UniqueConstraint(fields=("holder", "cluster"), condition=models.Q(personal=True),
                                               name="one_personal_volume_per_person_and_cluster")]

    def __str__(self) -> str:
        return f"{self.name} ({self.volume_id})"

    def get_absolute_url(self) -> str:
        return f"/clc/volumes/{self.volume_id}/"


class Snapshot(models.Model):
    """A point-in-time copy of a volume, kept by the volume's storage controller; owned by the volume's owner-group
    (ruled as type ``volume``). A volume with snapshots cannot be deleted (PROTECT)."""

    snapshot_id = models.CharField(max_length=12, unique=True, validators=[validate_snapshot_id])
    volume = models.ForeignKey(Volume, on_delete=models.PROTECT, related_name="snapshots")
    owner_group = models.ForeignKey(OwnerGroup, on_delete=models.PROTECT, related_name="snapshots")
    size_bytes = models.BigIntegerField(help_text="bytes: the volume's size when it was taken")
    state = models.CharField(max_length=10, choices=SnapshotStateChoices.choices,
                             default=SnapshotStateChoices.AVAILABLE)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created", "snapshot_id")

    def __str__(self) -> str:
        return f"{self.snapshot_id} of {self.volume.volume_id}"


class TaskTransaction(models.Model):
    """The notes' ectaskTransaction: one row per tid (``srcid:dstid:insid``), every phase/state change written here
    so that a restarted daemon or a reloaded page finds it."""

    tid = models.CharField(max_length=40, unique=True)
    src_image_id = models.CharField(max_length=12)
    dst_image_id = models.CharField(max_length=12)
    instance_id = models.CharField(max_length=12)
    user = models.CharField(max_length=150, blank=True)
    phase = models.CharField(max_length=12, choices=PhaseChoices.choices, default=PhaseChoices.INIT)
    state = models.CharField(max_length=32, default="init")
    progress = models.PositiveSmallIntegerField(default=0)
    vmstatus = models.CharField(max_length=32, blank=True)
    ccip = models.CharField(max_length=45, blank=True)
    ncip = models.CharField(max_length=45, blank=True)
    message = models.TextField(blank=True)
    failed = models.BooleanField(default=False)
    done = models.BooleanField(default=False)
    runtime_option = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-updated",)
        verbose_name = "task"

    def __str__(self) -> str:
        return f"{self.tid} {self.phase}/{self.state} {self.progress}%"


class ClusterNetwork(models.Model):
    """The network settings of one cluster, kept on the CLC; its CC pulls them (``as_cc_config``). Every rule that
    ties the fields together (addresses inside the subnet, pools that do not overlap, ports clear of the CC's own
    services, pools not shared with another cluster) is ``clc.services.networks.validate_network``: save these
    through ``save_network``, not directly."""

    cluster = models.CharField(max_length=63, unique=True, validators=[name_validator])
    kind = models.CharField(max_length=3, choices=InstanceKindChoices.choices,
                            help_text="what the cluster runs: virtual servers, remote or local desktops")
    mode = models.CharField(max_length=7, choices=NetworkModeChoices.choices, default=NetworkModeChoices.PRIVATE,
                            help_text="public: users reach the nodes directly; private: through the CC's public "
                                      "address")
    cc_eip = models.GenericIPAddressField("CC public address", protocol="IPv4",
                                          help_text="the CC's address users reach (the notes' cc_eip)")
    cc_internal_ip = models.GenericIPAddressField("CC internal address", protocol="IPv4",
                                                  help_text="the CC's address on the cluster LAN")
    cc_public_interface = models.CharField("CC public interface", max_length=15,
                                           help_text="interface of the CC host that carries cc_eip, e.g. eth0")
    cc_private_interface = models.CharField("CC LAN interface", max_length=15,
                                            help_text="interface of the CC host on the cluster LAN, e.g. eth1")
    lan_subnet = models.CharField("LAN subnet", max_length=18, help_text="the cluster LAN, e.g. 10.20.0.0/24")
    lan_gateway = models.GenericIPAddressField("LAN gateway", protocol="IPv4",
                                               help_text="the LAN's router; empty = the CC's internal address")
    dhcp_start = models.GenericIPAddressField("DHCP pool start", protocol="IPv4", null=True, blank=True,
                                              help_text="first LAN address the CC's DHCP reserves for bridged VMs")
    dhcp_end = models.GenericIPAddressField("DHCP pool end", protocol="IPv4", null=True, blank=True,
                                            help_text="last address of that pool; both empty = no DHCP")
    eip_start = models.GenericIPAddressField("elastic IP pool start", protocol="IPv4", null=True, blank=True,
                                             help_text="first public address the CC may alias for a VM")
    eip_end = models.GenericIPAddressField("elastic IP pool end", protocol="IPv4", null=True, blank=True,
                                           help_text="last address of that pool; both empty = no elastic IPs")
    port_low = models.PositiveIntegerField(
        "first pool port", validators=[MinValueValidator(1024), MaxValueValidator(65535)],
        help_text="first port of the cluster's console and service port pool (1024 or more: lower ports need root). "
                  "For QEMU nodes start at 5900 or above: a QEMU VNC console is display N on port 5900+N, so a port "
                  "below 5900 cannot be given to it.")
    port_high = models.PositiveIntegerField("last pool port",
                                            validators=[MinValueValidator(1024), MaxValueValidator(65535)],
                                            help_text="last port of that pool (65535 at most)")
    node_bridge = models.CharField("node bridge", max_length=15, blank=True,
                                   help_text="bridge on the nodes that bridged VMs join, e.g. br0; empty = NAT only")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("cluster",)
        verbose_name = "cluster network"

    def __str__(self) -> str:
        return f"{self.cluster} ({self.kind}, {self.mode})"

    def get_absolute_url(self) -> str:
        return f"/clc/networks/{self.cluster}/edit/"


class JoinToken(models.Model):
    """A secret that enrols hosts without waiting for an administrator (docs/security.md): servers of the given
    roles in one cluster, or classroom PCs (put into ``owner_group``), ``uses_left`` more times until ``expires``.
    Only its sha256 is kept; the token itself is shown once, to whoever issued it."""

    digest = models.CharField(max_length=64, unique=True)
    label = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=10, choices=HostKindChoices.choices)
    roles = models.CharField(max_length=100, blank=True, help_text="comma list of server roles (servers only)")
    cluster = models.CharField(max_length=63, validators=[name_validator])
    owner_group = models.ForeignKey(OwnerGroup, null=True, blank=True, on_delete=models.CASCADE,
                                    related_name="join_tokens", help_text="where enrolled PCs go (PCs only)")
    uses_left = models.PositiveIntegerField(default=1)
    expires = models.DateTimeField()
    created = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ("-created",)

    def __str__(self) -> str:
        return f"{self.label or self.kind} ({self.cluster}, {self.uses_left} left)"


class HostCredential(models.Model):
    """A host's public key as the cloud trusts it (docs/security.md): a server's, with the roles it may call as, or
    a classroom PC's, with its MAC. Pending until an administrator approves it (unless it came with a join token);
    only an active key signs calls that any role accepts."""

    name = models.CharField(max_length=63, unique=True, validators=[name_validator])
    kind = models.CharField(max_length=10, choices=HostKindChoices.choices)
    roles = models.CharField(max_length=100, blank=True, help_text="comma list of server roles")
    cluster = models.CharField(max_length=63, validators=[name_validator])
    mac = models.CharField(max_length=17, blank=True, validators=[mac_validator])
    public_key = models.CharField(max_length=64)
    fingerprint = models.CharField(max_length=60)
    state = models.CharField(max_length=10, choices=KeyStateChoices.choices, default=KeyStateChoices.PENDING)
    address = models.GenericIPAddressField(null=True, blank=True, help_text="where the enrolment came from")
    requested_at = models.DateTimeField()
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.CharField(max_length=150, blank=True, help_text="a person, or the join token used")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)
    owner_group = models.ForeignKey(OwnerGroup, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="host_keys",
                                    help_text="a PC's: the owner-group of the join token it enrolled with, which its "
                                              "record gets when it registers")

    class Meta:
        ordering = ("state", "name")
        indexes = [models.Index(fields=("state", "kind"))]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.state})"

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(role for role in self.roles.split(",") if role)


class LoginThrottle(models.Model):
    """The failed logins of one user name (as typed, whether or not an account has it) or one client address, and
    the lock they earned. Kept and judged by ``clc.services.logins``; a row without failures or lock is deleted."""

    kind = models.CharField(max_length=10, choices=LoginThrottleKindChoices.choices)
    key = models.CharField(max_length=150, help_text="the user name, case-folded, or the address (IPv6: its /64)")
    failures = models.PositiveIntegerField(default=0, help_text="failed logins since first_failure")
    first_failure = models.DateTimeField(null=True, blank=True, help_text="start of the counted failures")
    last_failure = models.DateTimeField(null=True, blank=True, db_index=True)
    locked_until = models.DateTimeField(null=True, blank=True, help_text="logins are refused until then")
    locks = models.PositiveIntegerField(default=0, help_text="locks in a row; each lasts twice the one before")

    class Meta:
        constraints = [models.UniqueConstraint(fields=("kind", "key"), name="one_login_throttle_per_key")]
        ordering = ("-last_failure",)
        verbose_name = "failed login"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.key}: {self.failures} failures"


class NotificationLevelChoices(models.TextChoices):
    INFO = "info", "Information"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"


class Notification(models.Model):
    """Something the cloud did or saw that people should know of (issue 17): an alarm's notification, and what its
    stop, reboot or the guest watchdog did (``clc.services.alarm_actions``). Seen by those who may read instances of
    ``owner_group`` (of the instance itself where it names one: ``clc.services.notifications``). ``event_key`` makes
    an alarm's action, posted again by the watch, one notification and one action."""

    time = models.DateTimeField(db_index=True)
    level = models.CharField(max_length=7, choices=NotificationLevelChoices.choices,
                             default=NotificationLevelChoices.INFO)
    title = models.CharField(max_length=200)
    message = models.TextField(blank=True)
    instance_id = models.CharField(max_length=12, blank=True, db_index=True,
                                   help_text="the instance it is about (kept after the instance is deleted)")
    owner_group = models.CharField(max_length=255, blank=True,
                                   help_text="owner-group path of who may see it (the instance's; the root's if none)")
    alarm = models.CharField(max_length=255, blank=True, help_text="the watch's alarm that caused it")
    action = models.CharField(max_length=20, blank=True, help_text="notify, stop, reboot, watchdog, or what followed")
    event_key = models.CharField(max_length=64, null=True, blank=True, unique=True,
                                 help_text="sha256 of the alarm, action, instance and time the watch posted")
    read = models.BooleanField(default=False)

    class Meta:
        ordering = ("read", "-time", "-pk")
        indexes = [models.Index(fields=("owner_group", "read"))]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M} {self.title}"
