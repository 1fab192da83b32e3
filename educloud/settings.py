"""Django settings, derived from this host's eduCloud configuration (``luhyaapi.config``)."""

from __future__ import annotations

from pathlib import Path

from luhyaapi.config import celery_broker_url, django_cache, django_database, load_config
from luhyaapi.keys import host_key

EDUCLOUD = load_config()
BASE_DIR = Path(__file__).resolve().parent.parent

# Derived from the host's own key so that a host needs no second secret; per host so sessions do not cross hosts.
SECRET_KEY = host_key(EDUCLOUD.name, EDUCLOUD.data_dir).derived_secret("django")
DEBUG = EDUCLOUD.debug
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "luhyadb",
    "daemons",
    *EDUCLOUD.roles,
    # The periodic jobs' schedules (luhyaapi.jobs), kept and sent by Celery beat on the CLC's host.
    *(["django_celery_beat"] if "clc" in EDUCLOUD.roles else []),
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "clc.middleware.IdleSessionMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "educloud.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "clc.context_processors.nav",
            ],
        },
    },
]
WSGI_APPLICATION = "educloud.wsgi.application"

DATABASES = {"default": django_database(EDUCLOUD.database_url)}
# The web server's threads (``daemons.host.web_server``). No request of ours waits on a call back into this host, and
# at most clc.services.instances.IN_REQUEST_PLACEMENTS launches call a cluster from within a request.
WEB_THREADS = 16
CACHES = {"default": django_cache(EDUCLOUD.cache_url)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# The throttle of failed logins wraps Django's own backend: see clc.services.logins for why there.
AUTHENTICATION_BACKENDS = ["clc.services.logins.ThrottledModelBackend"]
LOGIN_URL = "/clc/login/"
LOGIN_REDIRECT_URL = "/clc/"
LOGOUT_REDIRECT_URL = "/clc/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = EDUCLOUD.data_dir / "static"
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "luhyaapi.drf.SignedRequestAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["luhyaapi.drf.IsSignedNodeOrStaff"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["luhyaapi.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "luhyaapi.api.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "luhyaapi.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The OpenAPI document of each role's API (luhyaapi/openapi.py). 3.1 because request bodies are described by
# pydantic's JSON schema (2020-12); the docs page's scripts come from the sidecar package, never from a CDN.
SPECTACULAR_SETTINGS = {
    "TITLE": "eduCloud API",
    "DESCRIPTION": "One role's REST API. Calls between roles are signed (educloudSignature); people log in to the "
                   "console first (session cookie, and the CSRF token on writes).",
    "VERSION": "1.0",
    "OAS_VERSION": "3.1.0",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"LivenessEnum": "luhyadb.choices.LivenessChoices",
                            "RoleEnum": "luhyadb.choices.RoleChoices",
                            "HostKindEnum": "luhyadb.choices.HostKindChoices",
                            "KeyStateEnum": "luhyadb.choices.KeyStateChoices",
                            "InstanceKindEnum": "luhyadb.choices.InstanceKindChoices"},
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "luhyaapi.openapi.add_error_responses"],
}

# Commands to nodes are Celery tasks (educloud/celery.py, luhyaapi/commands.py, docs/architecture.md "Commands").
CELERY_BROKER_URL = celery_broker_url(EDUCLOUD)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# py-amqp's publisher confirms: a command is sent once RabbitMQ holds it (the SQLite broker holds it on its commit).
CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Acknowledged when done, and given back when the worker dies under it: a command is never lost with its worker.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A node's worker takes only what it runs (a long image prepare must not sit on commands another slot could run).
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "educloud.default"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# The workers' task events are how the CC knows each command's live state (cc.services.command_tasks). Not the
# sender's "sent" event: the CC records a command queued itself, and that event was a second confirmed publish per
# command (bench/command_publish.py: 428 commands/s with it, 614 without, on RabbitMQ).
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_TASK_TRACK_STARTED = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# No result backend (a command's state is read from the workers' events), so no daily clean-up of results either.
CELERY_RESULT_EXPIRES = None

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"refusals": {"()": "luhyaapi.logfilters.RefusalsOnOneLine"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["refusals"]}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"pika": {"level": "WARNING"}, "waitress": {"level": "WARNING"}, "kombu": {"level": "WARNING"},
                "celery": {"level": "WARNING"}, "celery.worker.strategy": {"level": "WARNING"}},
}
