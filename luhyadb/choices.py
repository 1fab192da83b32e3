"""Enumerations of the cloud's records."""

from django.db import models


class RoleChoices(models.TextChoices):
    CLC = "clc", "Cloud controller"
    WALRUS = "walrus", "Walrus (image store)"
    CC = "cc", "Cluster controller"
    NC = "nc", "Node controller"
    SC = "sc", "Storage controller"
    WATCH = "watch", "Cloudwatch"


class LivenessChoices(models.TextChoices):
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"
    STOPPED = "stopped", "Stopped"


class ResourceTypeChoices(models.TextChoices):
    """The types of resource an owner-group's permissions name (the notes, II.1), one per kind of record."""

    HOST = "host", "Host"
    SERVER = "server", "Server"
    IMAGE = "image", "Image"
    INSTANCE = "instance", "Instance"
    TASK = "task", "Task"
    ACCOUNT = "account", "Account"
    OWNERGROUP = "ownergroup", "Owner-group"
    VMTYPE = "vmtype", "VM type"
    NETWORK = "network", "Cluster network"
    POOL = "pool", "Desktop pool"
    SHARE = "share", "File share"
    VOLUME = "volume", "Volume"


class AccountRoleChoices(models.TextChoices):
    """What kind of person an account is (the notes' scenarios); the role caps what its owner-group's permissions
    may grant, see ``clc.services.authz``. Anonymous is not an account: it is whoever is not logged in."""

    USER = "user", "User (uses the desktops given to them)"
    POWERUSER = "poweruser", "Power user (changes and uses predefined resources)"
    POWERADM = "poweradm", "Power administrator (manages servers and desktops)"
    SUPERADM = "superadm", "Super administrator (manages everything)"


class OsTypeChoices(models.TextChoices):
    LINUX = "linux", "Linux"
    WINDOWS = "windows", "Windows"
    OTHER = "other", "Other"


class ArchChoices(models.IntegerChoices):
    BITS32 = 32, "32 bit"
    BITS64 = 64, "64 bit"


class UsageChoices(models.TextChoices):
    DESKTOP = "desktop", "Desktop"
    SERVER = "server", "Server"


class InstanceKindChoices(models.TextChoices):
    VS = "vs", "Virtual server"
    RVD = "rvd", "Remote virtual desktop"
    LVD = "lvd", "Local virtual desktop"


class InstanceStateChoices(models.TextChoices):
    """An instance's life: defined -> scheduled -> preparing -> booting -> running -> stopping -> stopped
    (-> scheduled again on the next run); deleting ends with the record removed; failed says why in ``message``.
    A wizard's VM goes stopped -> submitting -> (removed) when its disk is submitted as an image version."""

    DEFINED = "defined", "Defined"
    SCHEDULED = "scheduled", "Scheduled"
    PREPARING = "preparing", "Preparing"
    BOOTING = "booting", "Booting"
    RUNNING = "running", "Running"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"
    SUBMITTING = "submitting", "Submitting (image wizard)"
    DELETING = "deleting", "Deleting"
    DELETED = "deleted", "Deleted"
    FAILED = "failed", "Failed"


class PlacingChoices(models.TextChoices):
    """Where a run stands with the clusters while no cluster has taken it: ``queued`` (no cluster asked yet: the
    placer will), ``asked`` (a cluster was asked and has not answered; its status reports or the placer asking again
    with the same run number settle it). Empty once a cluster took it or refused it."""

    NONE = "", "Placed or not running"
    QUEUED = "queued", "Waiting to be placed"
    ASKED = "asked", "Asked a cluster, no answer yet"


class PhaseChoices(models.TextChoices):
    INIT = "init", "Init"
    PREPARING = "preparing", "Preparing"
    EDITING = "editing", "Editing"
    SUBMITTING = "submitting", "Submitting"
    FAILED = "failed", "Failed"


class NetworkModeChoices(models.TextChoices):
    """How users reach a cluster's VMs (the notes, V and VII): public = the nodes have public addresses and users
    connect to them directly; private = the nodes are on a private LAN and users go through the CC's public address
    (``cc_eip``), which forwards (DNAT) to the node, or to a VM's elastic IP."""

    PUBLIC = "public", "Public (nodes reachable directly)"
    PRIVATE = "private", "Private (through the CC's public address)"


class HostKindChoices(models.TextChoices):
    """What an enrolled host is: a server of one or more roles, or a classroom PC (its node controller)."""

    SERVER = "server", "Server"
    PC = "pc", "Classroom PC"


class KeyStateChoices(models.TextChoices):
    """A host key's life: pending until approved (or enrolled with a join token), active, revoked."""

    PENDING = "pending", "Waiting for approval"
    ACTIVE = "active", "Active"
    REVOKED = "revoked", "Revoked"


class LoginThrottleKindChoices(models.TextChoices):
    """What failed logins are counted against: the user name typed, or the address the attempt came from."""

    ACCOUNT = "account", "User name"
    ADDRESS = "address", "Address"


class VolumeStateChoices(models.TextChoices):
    """A volume's life as the CLC records it: ``creating`` while its SC writes its file (``progress`` percent),
    ``available``, ``attaching`` until the instance's node reports it plugged in, ``in-use`` while attached to an
    instance (also while that instance is stopped: it gets the volume again when it starts), ``detaching`` until the
    node reports it unplugged, ``deleting`` while its SC removes it, ``failed`` with the reason in ``message``
    (delete it)."""

    CREATING = "creating", "Creating"
    AVAILABLE = "available", "Available"
    ATTACHING = "attaching", "Attaching"
    IN_USE = "in-use", "In use"
    DETACHING = "detaching", "Detaching"
    DELETING = "deleting", "Deleting"
    FAILED = "failed", "Failed"


class VolumeSourceChoices(models.TextChoices):
    """What a volume was made from."""

    EMPTY = "empty", "Empty"
    SNAPSHOT = "snapshot", "A snapshot"
    IMAGE = "image", "An image version"


class SnapshotStateChoices(models.TextChoices):
    AVAILABLE = "available", "Available"
    DELETING = "deleting", "Deleting"
