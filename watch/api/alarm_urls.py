"""URLs of the alarms API (issue 17), included by the role's ``api/urls.py`` under its namespace: ``alarm-list``,
``alarm-detail`` and ``alarm-history``."""

from rest_framework.routers import SimpleRouter

from watch.api.alarms import AlarmViewSet

router = SimpleRouter()
router.register("alarms", AlarmViewSet, basename="alarm")
urlpatterns = router.urls
