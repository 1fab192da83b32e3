"""The timetable of desktop pools (``Lesson``): on its weekdays, from ``starts`` to ``ends`` in the cloud's time zone, a
class uses its pool. ``prestart_minutes`` before a lesson every desktop of the pool is started (``pools.wanted_ready``),
so thirty students who sit down at 8:00 find their desktops up; for ``AFTER_LESSON_MINUTES`` after it the desktops
nobody uses are stopped. ``keep_pools`` is the periodic job that does both, with ``now`` given by its caller (tests
inject the time, nothing sleeps).

Lessons of one pool never overlap on a weekday: the pool could not be both kept ready for one and emptied after the
other.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta

from django.utils import timezone

from clc.services.pools import keep_pool, refuse, stop_unused
from clc.services.portal import ACTIVITY_SECONDS
from luhyaapi.ids import new_id
from luhyadb.models import DesktopPool, Lesson

logger = logging.getLogger(__name__)

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# How long after a lesson its pool's unused desktops are looked for (the job runs every minute, so a student who
# closes the console a little after the bell is caught too).
AFTER_LESSON_MINUTES = 15
# A console open in the portal marks its desktop in use every ACTIVITY_SECONDS; two missed marks mean it is closed.
QUIET_SECONDS = 2 * ACTIVITY_SECONDS


def lesson_problems(*, pool: DesktopPool, weekdays: list, starts: time, ends: time,
                    lesson: Lesson | None = None) -> dict[str, str]:
    """What is wrong with a lesson's settings, by field ({} when nothing is)."""
    problems = {}
    problem = weekdays_problem(weekdays)
    if problem:
        problems["weekdays"] = problem
        return problems
    if starts >= ends:
        problems["ends"] = f"the lesson ends ({ends:%H:%M}) before it starts ({starts:%H:%M})"
        return problems
    others = pool.lessons.exclude(pk=lesson.pk) if lesson is not None else pool.lessons.all()
    for other in others:
        shared = sorted(set(other.weekdays) & set(weekdays))
        if shared and starts < other.ends and other.starts < ends:
            problems["starts"] = (f"it overlaps {other.name} ({other.starts:%H:%M}-{other.ends:%H:%M} on "
                                  f"{', '.join(WEEKDAYS[day] for day in shared)}) of the same pool")
            break
    return problems


def weekdays_problem(weekdays) -> str:
    """What is wrong with a lesson's weekdays ("" when nothing is)."""
    if (not isinstance(weekdays, list) or not weekdays
            or not all(isinstance(day, int) and not isinstance(day, bool) and 0 <= day <= 6 for day in weekdays)
            or len(set(weekdays)) != len(weekdays)):
        return "a list of distinct weekdays, 0 = Monday ... 6 = Sunday, at least one"
    return ""


def create_lesson(*, pool: DesktopPool, name: str, weekdays: list[int], starts: time, ends: time,
                  prestart_minutes: int = 10) -> Lesson:
    """A new lesson of the pool's timetable (PoolError 400 naming the field)."""
    refuse(lesson_problems(pool=pool, weekdays=weekdays, starts=starts, ends=ends))
    lesson = Lesson.objects.create(lesson_id=new_id("lesson"), pool=pool, name=name, weekdays=sorted(weekdays),
                                   starts=starts, ends=ends, prestart_minutes=prestart_minutes)
    logger.info("lessons: %s (%s) of %s: %s %s-%s", lesson.lesson_id, name, pool.pool_id,
                ",".join(WEEKDAYS[day][:3] for day in lesson.weekdays), f"{starts:%H:%M}", f"{ends:%H:%M}")
    return lesson


def change_lesson(lesson: Lesson, **changes) -> Lesson:
    after = {name: changes.get(name, getattr(lesson, name)) for name in ("pool", "weekdays", "starts", "ends")}
    refuse(lesson_problems(**after, lesson=lesson))
    for name, value in changes.items():
        setattr(lesson, name, sorted(value) if name == "weekdays" else value)
    lesson.save()
    return lesson


def delete_lesson(lesson: Lesson) -> None:
    """Remove the lesson from its pool's timetable (the pool keeps only ``min_ready`` up at that hour from now on)."""
    lesson.delete()
    logger.info("lessons: %s (%s) of %s deleted", lesson.lesson_id, lesson.name, lesson.pool.pool_id)


def _occurrences(lesson: Lesson, around: date) -> list[tuple[datetime, datetime]]:
    """The lesson's (start, end) in the cloud's time zone on the days around ``around`` it takes place."""
    zone = timezone.get_current_timezone()
    found = []
    for offset in (-1, 0, 1):
        day = around + timedelta(days=offset)
        if day.weekday() in lesson.weekdays:
            found.append((datetime.combine(day, lesson.starts, zone), datetime.combine(day, lesson.ends, zone)))
    return found


def lesson_on(pool: DesktopPool, now: datetime) -> Lesson | None:
    """The pool's lesson that is on at ``now``, or begins within its ``prestart_minutes``; None if there is none."""
    local = timezone.localtime(now)
    for lesson in pool.lessons.all():
        for starts, ends in _occurrences(lesson, local.date()):
            if starts - timedelta(minutes=lesson.prestart_minutes) <= local < ends:
                return lesson
    return None


def lesson_just_ended(pool: DesktopPool, now: datetime) -> Lesson | None:
    """The pool's lesson that ended within the last ``AFTER_LESSON_MINUTES`` (None if none did, or one is on)."""
    if lesson_on(pool, now) is not None:
        return None
    local = timezone.localtime(now)
    for lesson in pool.lessons.all():
        for _, ends in _occurrences(lesson, local.date()):
            if ends <= local < ends + timedelta(minutes=AFTER_LESSON_MINUTES):
                return lesson
    return None


def keep_pools(now: datetime | None = None) -> dict[str, list[str]]:
    """The periodic job: every pool keeps its ready desktops up (``pools.keep_pool``, which counts a lesson about to
    begin), and a pool whose lesson just ended stops the desktops nobody uses. Returns, by pool id, the desktops
    started ("+id") and stopped ("-id")."""
    now = now or timezone.now()
    done: dict[str, list[str]] = {}
    for pool in DesktopPool.objects.select_related("image", "vm_type", "owner_group"):
        changes = [f"+{insid}" for insid in keep_pool(pool, now)]
        ended = lesson_just_ended(pool, now)
        if ended is not None:
            changes += [f"-{insid}" for insid in stop_unused(pool, now - timedelta(seconds=QUIET_SECONDS))]
        if changes:
            done[pool.pool_id] = changes
    return done
