"""URLs of the cluster controller's API."""

from django.urls import path, re_path

from cc.api import admin, desktops, tasks, views, volumes, wake
from luhyaapi.api import PingView
from luhyaapi.reporting import StatusReportView

app_name = "cc-api"
urlpatterns = [
    path("ping/", PingView.as_view(role="cc"), name="ping"),
    path("status/report/", StatusReportView.as_view(role="cc"), name="status-report"),
    path("register/server/", views.RegisterServerView.as_view(), name="register-server"),
    path("register/host/", views.RegisterHostView.as_view(), name="register-host"),
    path("enrolments/", views.EnrolmentView.as_view(), name="enrolments"),
    path("peers/<str:name>/", views.PeerView.as_view(), name="peer"),
    path("nodes/<str:name>/commands/", views.NodeCommandView.as_view(), name="node-commands"),
    path("nodes/<str:name>/drain/", admin.NodeDrainView.as_view(), name="node-drain"),
    path("nodes/<str:name>/", admin.NodeView.as_view(), name="node"),
    path("usage/", admin.UsageView.as_view(), name="usage"),
    path("tasks/", tasks.CommandTasksView.as_view(), name="tasks"),
    path("tasks/<str:task_id>/", tasks.CommandTaskView.as_view(), name="task"),
    path("workers/", tasks.WorkersView.as_view(), name="workers"),
    path("hosts/wake/", wake.WakeView.as_view(), name="hosts-wake"),
    path("hosts/<str:mac>/desktops/", desktops.HostDesktopsView.as_view(), name="host-desktops"),
    path("instances/", views.InstancesView.as_view(), name="instances"),
    path("instances/<str:insid>/stop/", views.InstanceStopView.as_view(), name="instance-stop"),
    path("instances/<str:insid>/submit/", views.InstanceSubmitView.as_view(), name="instance-submit"),
    path("instances/<str:insid>/volumes/", volumes.InstanceVolumesView.as_view(), name="instance-volumes"),
    path("instances/<str:insid>/volumes/<str:volume_id>/detach/", volumes.InstanceVolumeDetachView.as_view(),
         name="instance-volume-detach"),
    path("instances/<str:insid>/", views.InstanceView.as_view(), name="instance"),
    re_path(r"^relay/walrus/api/1\.0/(?P<rest>uploads/.*)$", views.WalrusRelayView.as_view(), name="walrus-relay"),
    path("images/<str:image_id>/versions/<str:version>/data", views.ImageDataView.as_view(), name="image-data"),
]
