"""Pages of the admin console."""

from django.contrib.auth import views as auth_views
from django.urls import path, register_converter

from clc import (
    views,
    views_accounts,
    views_builds,
    views_class,
    views_instances,
    views_keys,
    views_ownergroups,
    views_pools,
    views_tasks,
    views_vmtypes,
)
from clc.forms import LoginForm
from clc.views_hosts import (
    HostCreateView,
    HostDeleteView,
    HostListView,
    HostPowerOffView,
    HostUpdateView,
    HostWakeView,
    ServerListView,
    ServerPowerOffView,
    ServerWakeView,
)
from clc.views_networks import (
    ClusterNameConverter,
    NetworkCreateView,
    NetworkDeleteView,
    NetworkListView,
    NetworkUpdateView,
)
from clc.views_servers import (
    ClusterUsageView,
    HostRefreshView,
    ServerDrainView,
    ServerForgetView,
    ServerRefreshView,
)

register_converter(views_instances.InstanceIdConverter, "insid")
register_converter(views_builds.TaskIdConverter, "tid")
register_converter(ClusterNameConverter, "clustername")
register_converter(views_accounts.UsernameConverter, "username")
register_converter(views_ownergroups.OwnerPathConverter, "ownerpath")
register_converter(views_vmtypes.VMTypeNameConverter, "vmtype")
register_converter(views_pools.PoolIdConverter, "poolid")
register_converter(views_pools.LessonIdConverter, "lessonid")

app_name = "clc"
urlpatterns = [
    path("", views_accounts.ConsoleHomeView.as_view(), name="status"),
    path("login/", auth_views.LoginView.as_view(template_name="clc/login.html", authentication_form=LoginForm),
         name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", views_accounts.MyAccountView.as_view(), name="my-account"),
    path("accounts/", views_accounts.AccountListView.as_view(), name="accounts"),
    path("accounts/new/", views_accounts.AccountCreateView.as_view(), name="account-create"),
    path("accounts/<username:username>/edit/", views_accounts.AccountUpdateView.as_view(), name="account-edit"),
    path("accounts/<username:username>/password/", views_accounts.AccountPasswordView.as_view(),
         name="account-password"),
    path("accounts/<username:username>/unlock/", views_accounts.AccountUnlockView.as_view(), name="account-unlock"),
    path("accounts/<username:username>/delete/", views_accounts.AccountDeleteView.as_view(), name="account-delete"),
    path("groups/", views_ownergroups.GroupListView.as_view(), name="groups"),
    path("groups/new/", views_ownergroups.GroupCreateView.as_view(), name="group-create"),
    path("groups/<ownerpath:path>/edit/", views_ownergroups.GroupUpdateView.as_view(), name="group-edit"),
    path("groups/<ownerpath:path>/delete/", views_ownergroups.GroupDeleteView.as_view(), name="group-delete"),
    path("workers/", views.WorkersView.as_view(), name="workers"),
    path("tasks/", views_tasks.TaskListView.as_view(), name="tasks"),
    path("tasks/<str:tid>/", views_tasks.TaskDetailView.as_view(), name="task"),
    path("class/", views_class.ClassListView.as_view(), name="classes"),
    path("class/<ownerpath:path>/", views_class.ClassConsoleView.as_view(), name="class"),
    path("class/<ownerpath:path>/status/", views_class.ClassStatusView.as_view(), name="class-status"),
    path("class/<ownerpath:path>/act/", views_class.ClassActionView.as_view(), name="class-act"),
    path("class/<ownerpath:path>/screens/<insid:insid>.png", views_class.ClassScreenView.as_view(),
         name="class-screen"),
    path("class/<ownerpath:path>/watch/<insid:insid>/", views_class.ClassWatchView.as_view(), name="class-watch"),
    path("class/<ownerpath:path>/watch/<insid:insid>/status/", views_class.ClassWatchStatusView.as_view(),
         name="class-watch-status"),
    path("class/<ownerpath:path>/watch/<insid:insid>/token/", views_class.ClassWatchTokenView.as_view(),
         name="class-watch-token"),
    path("vmtypes/", views_vmtypes.VMTypeListView.as_view(), name="vmtypes"),
    path("vmtypes/new/", views_vmtypes.VMTypeCreateView.as_view(), name="vmtype-create"),
    path("vmtypes/<vmtype:name>/edit/", views_vmtypes.VMTypeUpdateView.as_view(), name="vmtype-edit"),
    path("vmtypes/<vmtype:name>/delete/", views_vmtypes.VMTypeDeleteView.as_view(), name="vmtype-delete"),
    path("images/", views.ImageListView.as_view(), name="images"),
    path("images/new/", views.ImageCreateView.as_view(), name="image-create"),
    path("images/<str:image_id>/", views.ImageDetailView.as_view(), name="image-detail"),
    path("images/<str:image_id>/edit/", views.ImageUpdateView.as_view(), name="image-edit"),
    path("images/<str:image_id>/delete/", views.ImageDeleteView.as_view(), name="image-delete"),
    path("images/<str:image_id>/wizard/", views_builds.BuildStartView.as_view(), name="build-start"),
    path("builds/<tid:tid>/", views_builds.BuildDetailView.as_view(), name="build"),
    path("builds/<tid:tid>/<str:step>/", views_builds.BuildStepView.as_view(), name="build-step"),
    path("instances/", views_instances.InstanceListView.as_view(), name="instances"),
    path("instances/new/", views_instances.InstanceCreateView.as_view(), name="instance-create"),
    path("instances/<insid:insid>/", views_instances.InstanceDetailView.as_view(), name="instance-detail"),
    path("instances/<insid:insid>/edit/", views_instances.InstanceUpdateView.as_view(), name="instance-edit"),
    path("instances/<insid:insid>/run/", views_instances.InstanceRunView.as_view(), name="instance-run"),
    path("instances/<insid:insid>/stop/", views_instances.InstanceStopView.as_view(), name="instance-stop"),
    path("instances/<insid:insid>/delete/", views_instances.InstanceDeleteView.as_view(), name="instance-delete"),
    path("instances/<insid:insid>/push/", views_instances.InstancePushView.as_view(), name="instance-push"),
    path("pools/", views_pools.PoolListView.as_view(), name="pools"),
    path("pools/new/", views_pools.PoolCreateView.as_view(), name="pool-create"),
    path("pools/<poolid:pool_id>/", views_pools.PoolDetailView.as_view(), name="pool-detail"),
    path("pools/<poolid:pool_id>/edit/", views_pools.PoolUpdateView.as_view(), name="pool-edit"),
    path("pools/<poolid:pool_id>/delete/", views_pools.PoolDeleteView.as_view(), name="pool-delete"),
    path("pools/<poolid:pool_id>/lessons/", views_pools.LessonAddView.as_view(), name="pool-lesson-add"),
    path("pools/<poolid:pool_id>/lessons/<lessonid:lesson_id>/delete/", views_pools.LessonDeleteView.as_view(),
         name="pool-lesson-delete"),
    path("hosts/", HostListView.as_view(), name="hosts"),
    path("hosts/new/", HostCreateView.as_view(), name="host-create"),
    path("hosts/servers/", ServerListView.as_view(), name="servers"),
    path("hosts/servers/<str:role>/<str:name>/wake/", ServerWakeView.as_view(), name="server-wake"),
    path("hosts/servers/<str:role>/<str:name>/poweroff/", ServerPowerOffView.as_view(), name="server-poweroff"),
    path("hosts/servers/<str:role>/<str:name>/refresh/", ServerRefreshView.as_view(), name="server-refresh"),
    path("hosts/servers/<str:role>/<str:name>/drain/", ServerDrainView.as_view(), name="server-drain"),
    path("hosts/servers/<str:role>/<str:name>/forget/", ServerForgetView.as_view(), name="server-forget"),
    path("hosts/keys/", views_keys.KeyListView.as_view(), name="keys"),
    path("hosts/keys/<str:name>/approve/", views_keys.KeyApproveView.as_view(), name="key-approve"),
    path("hosts/keys/<str:name>/revoke/", views_keys.KeyRevokeView.as_view(), name="key-revoke"),
    path("hosts/tokens/", views_keys.JoinTokenListView.as_view(), name="tokens"),
    path("hosts/tokens/new/", views_keys.JoinTokenCreateView.as_view(), name="token-create"),
    path("hosts/tokens/<int:pk>/withdraw/", views_keys.JoinTokenWithdrawView.as_view(), name="token-withdraw"),
    path("hosts/<str:mac>/edit/", HostUpdateView.as_view(), name="host-edit"),
    path("hosts/<str:mac>/delete/", HostDeleteView.as_view(), name="host-delete"),
    path("hosts/<str:mac>/wake/", HostWakeView.as_view(), name="host-wake"),
    path("hosts/<str:mac>/poweroff/", HostPowerOffView.as_view(), name="host-poweroff"),
    path("hosts/<str:mac>/refresh/", HostRefreshView.as_view(), name="host-refresh"),
    path("networks/", NetworkListView.as_view(), name="networks"),
    path("networks/new/", NetworkCreateView.as_view(), name="network-create"),
    path("networks/<clustername:cluster>/edit/", NetworkUpdateView.as_view(), name="network-edit"),
    path("networks/<clustername:cluster>/delete/", NetworkDeleteView.as_view(), name="network-delete"),
    path("networks/<clustername:cluster>/usage/", ClusterUsageView.as_view(), name="network-usage"),
]
