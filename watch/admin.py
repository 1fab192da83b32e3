"""Admin pages of the metric store and the alarms: read-only (samples arrive through the store, which keeps the
rollups equal to the points; a row changed here would make them disagree; alarms are changed through the API, which
checks each field, and their history is the evaluation's record). Large tables show no full count."""

from django.contrib import admin

from luhyadb.admin import ReadOnlyAdmin
from watch.models import (
    Alarm,
    AlarmHistory,
    DimensionRollup,
    MetricPoint,
    MetricRollup,
    MetricSeries,
    SeriesDimension,
)


class SeriesDimensionInline(admin.TabularInline):
    model = SeriesDimension
    extra = 0
    can_delete = False
    fields = readonly_fields = ("name", "value")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MetricSeries)
class MetricSeriesAdmin(ReadOnlyAdmin):
    list_display = ("namespace", "name", "dimensions_key", "unit", "created")
    list_filter = ("namespace",)
    search_fields = ("name", "dimensions_key")
    inlines = (SeriesDimensionInline,)
    show_full_result_count = False


@admin.register(MetricPoint)
class MetricPointAdmin(ReadOnlyAdmin):
    list_display = ("series", "time", "value")
    list_select_related = ("series",)
    raw_id_fields = ("series",)
    show_full_result_count = False


@admin.register(MetricRollup)
class MetricRollupAdmin(ReadOnlyAdmin):
    list_display = ("series", "period", "start", "minimum", "maximum", "total", "count")
    list_filter = ("period",)
    list_select_related = ("series",)
    show_full_result_count = False


@admin.register(DimensionRollup)
class DimensionRollupAdmin(ReadOnlyAdmin):
    list_display = ("namespace", "name", "dimension", "value", "period", "start", "minimum", "maximum", "total",
                    "count")
    list_filter = ("period", "namespace", "dimension")
    show_full_result_count = False


class AlarmHistoryInline(admin.TabularInline):
    model = AlarmHistory
    extra = 0
    can_delete = False
    fields = readonly_fields = ("time", "kind", "old_state", "new_state", "reason")
    ordering = ("-time", "-id")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Alarm)
class AlarmAdmin(ReadOnlyAdmin):
    list_display = ("name", "namespace", "metric", "statistic", "comparison", "threshold", "period",
                    "evaluation_periods", "state", "enabled", "builtin", "owner_group")
    list_filter = ("state", "builtin", "enabled", "namespace")
    search_fields = ("name", "metric", "owner_group")
    inlines = (AlarmHistoryInline,)
    show_full_result_count = False


@admin.register(AlarmHistory)
class AlarmHistoryAdmin(ReadOnlyAdmin):
    list_display = ("alarm", "time", "kind", "old_state", "new_state", "reason")
    list_filter = ("kind", "new_state")
    list_select_related = ("alarm",)
    raw_id_fields = ("alarm",)
    show_full_result_count = False
