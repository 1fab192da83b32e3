"""URLs of the cloud controller's API."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from clc.api import views
from clc.api.accounts import AccountViewSet
from clc.api.admin import ClusterUsageView, HealthView
from clc.api.enrolment import EnrolmentView, HostCredentialViewSet, JoinTokenViewSet, PeerView
from clc.api.hosts import HostViewSet, ServerViewSet
from clc.api.networks import ClusterNetworkViewSet
from clc.api.ownergroups import OwnerGroupViewSet
from clc.api.pools import DesktopPoolViewSet, LessonViewSet
from clc.api.shares import ShareLoginView
from clc.api.tasks import TaskViewSet
from clc.api.volumes import SnapshotViewSet, VolumeViewSet
from luhyaapi.api import PingView

app_name = "clc-api"
urlpatterns = [
    path("ping/", PingView.as_view(role="clc"), name="ping"),
    path("status/", views.StatusView.as_view(), name="status"),
    path("register/server/", views.RegisterServerView.as_view(), name="register-server"),
    path("register/host/", views.RegisterHostView.as_view(), name="register-host"),
    path("enrolments/", EnrolmentView.as_view(), name="enrolments"),
    path("peers/<str:name>/", PeerView.as_view(), name="peer"),
    path("nodes/<str:name>/commands/", views.NodeCommandView.as_view(), name="node-commands"),
    path("tasks/<str:tid>/", views.TaskView.as_view(), name="task"),
    path("builds/", views.BuildListView.as_view(), name="builds"),
    path("builds/<str:tid>/", views.BuildView.as_view(), name="build"),
    path("builds/<str:tid>/<str:step>/", views.BuildStepView.as_view(), name="build-step"),
    path("servers/", ServerViewSet.as_view({"get": "list"}), name="server-list"),
    path("servers/<str:role>/<str:name>/", ServerViewSet.as_view({"get": "retrieve", "delete": "destroy"}),
         name="server-detail"),
    path("servers/<str:role>/<str:name>/refresh/", ServerViewSet.as_view({"post": "refresh"}), name="server-refresh"),
    path("servers/<str:role>/<str:name>/drain/", ServerViewSet.as_view({"post": "drain"}), name="server-drain"),
    path("clusters/<str:cluster>/usage/", ClusterUsageView.as_view(), name="cluster-usage"),
    path("health/", HealthView.as_view(), name="health"),
    path("servers/<str:role>/<str:name>/wake/", ServerViewSet.as_view({"post": "wake"}), name="server-wake"),
    path("servers/<str:role>/<str:name>/poweroff/", ServerViewSet.as_view({"post": "poweroff"}),
         name="server-poweroff"),
    path("dav/authorize/", ShareLoginView.as_view(), name="dav-authorize"),
    # The watch role's data as people may see it (issue 17): metrics, alarms, the console's notifications.
    path("", include("clc.api.metric_urls")),
    path("", include("clc.api.alarm_urls")),
    path("", include("clc.api.notification_urls")),
]
router = SimpleRouter()
router.register("images", views.ImageViewSet, basename="image")
router.register("instances", views.InstanceViewSet, basename="instance")
router.register("vmtypes", views.VMTypeViewSet, basename="vmtype")
router.register("hosts", HostViewSet, basename="host")
router.register("networks", ClusterNetworkViewSet, basename="network")
router.register("accounts", AccountViewSet, basename="account")
router.register("ownergroups", OwnerGroupViewSet, basename="ownergroup")
router.register("tasks", TaskViewSet, basename="task")
router.register("hostkeys", HostCredentialViewSet, basename="hostkey")
router.register("jointokens", JoinTokenViewSet, basename="jointoken")
router.register("pools", DesktopPoolViewSet, basename="pool")
router.register("lessons", LessonViewSet, basename="lesson")
router.register("volumes", VolumeViewSet, basename="volume")
router.register("snapshots", SnapshotViewSet, basename="snapshot")
urlpatterns += router.urls
