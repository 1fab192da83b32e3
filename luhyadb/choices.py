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
    HOST = "host", "Host"
    SERVER = "server", "Server"
    IMAGE = "image", "Image"
    INSTANCE = "instance", "Instance"
    TASK = "task", "Task"


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
    DEFINED = "defined", "Defined"
    PREPARING = "preparing", "Preparing"
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"


class PhaseChoices(models.TextChoices):
    INIT = "init", "Init"
    PREPARING = "preparing", "Preparing"
    EDITING = "editing", "Editing"
    SUBMITTING = "submitting", "Submitting"
    FAILED = "failed", "Failed"
