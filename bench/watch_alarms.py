"""Alarm evaluation benchmark: what one pass of the job "Evaluate alarms" (``watch.services.alarms.evaluate_alarms``)
costs with the guest watchdog's built-in alarm of ``--instances`` instances (default 10,000), on SQLite and on
MariaDB, and so how often ``watch.evaluate_seconds`` may ask for one.

The load: every instance's ``Alive``, one sample a minute for ``--minutes`` minutes (default 5) before the pass,
stored through the store (``watch.services.store.store``) with the dimensions a node gives. The first pass makes the
watchdog alarms and moves each from INSUFFICIENT_DATA to OK (a history row each): timed apart. Then ``--passes``
passes (default 5), 10 s apart in the alarms' clock: the steady state, one window read per alarm and no change.
Each pass is followed, in the same minute, by the reference: one grouped query that reads every watchdog's window at
once (the raw points of every ``Alive`` series in the last four minutes, minimum per series), the least a batched
evaluator would read.

Prints per database: the alarms, the first pass, a steady pass's median and 90th percentile with its watchdog sync
share, the reference's median, their ratio, and the shortest ``watch.evaluate_seconds`` that leaves a pass half of
its period. Run from the repository root:

    .venv/bin/python bench/watch_alarms.py
    .venv/bin/python bench/watch_alarms.py --database mysql --instances 2000 --passes 3
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

from databases import django_child, per_database_parser, run_each, serve_child
from watch_store import percentile

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PASS_SPACING = 10  # seconds between passes in the alarms' clock: watch.evaluate_seconds at its shortest
BATCH = 1000


def child(database_url: str, data_dir: str, instances: int, minutes: int, passes: int) -> dict:
    django_child(database_url, data_dir)
    from django.db.models import Min

    from luhyaapi.metrics import INSTANCE_METRICS, INSTANCE_NAMESPACE, MetricSample
    from watch.models import Alarm, MetricPoint
    from watch.services.alarms import WATCHDOG_LOOKBACK_PERIODS, WATCHDOG_METRIC, evaluate_alarms, sync_watchdog_alarms
    from watch.services.store import store

    rng = random.Random(17)
    # Half a minute into a minute, so that the last whole minute holds every instance's newest sample.
    now = time.time() // 60 * 60 + 30
    samples = [MetricSample(namespace=INSTANCE_NAMESPACE, name=WATCHDOG_METRIC, unit=INSTANCE_METRICS[WATCHDOG_METRIC],
                            dimensions={"InstanceId": f"ins-{n:08x}", "Cluster": f"c{n % 4}",
                                        "NodeName": f"nc-{n % 200:03d}", "OwnerGroup": f"edu.s{n % 50}.c{n % 7}"},
                            timestamp=now - 30 - 60 * minute - rng.uniform(0, 59.999), value=1.0)
               for minute in range(minutes) for n in range(instances)]
    started = time.perf_counter()
    for at in range(0, len(samples), BATCH):
        store(samples[at:at + BATCH])
    stored_seconds = time.perf_counter() - started

    def timed(call) -> float:
        began = time.perf_counter()
        call()
        return time.perf_counter() - began

    first_result: dict = {}
    first = timed(lambda: first_result.update(evaluate_alarms(now)))
    alarms = Alarm.objects.filter(builtin=True).count()
    assert alarms == instances and first_result["changed"] == instances, (alarms, first_result)

    def grouped_read(at: float) -> None:
        end = int(at // 60) * 60
        rows = list(MetricPoint.objects.filter(
            series__namespace=INSTANCE_NAMESPACE, series__name=WATCHDOG_METRIC,
            time__gte=end - 60 * (1 + WATCHDOG_LOOKBACK_PERIODS), time__lt=end)
            .values("series_id").annotate(low=Min("value")))
        assert len(rows) == instances, len(rows)

    steady, syncs, reference = [], [], []
    for number in range(1, passes + 1):
        at = now + PASS_SPACING * number
        result: dict = {}
        steady.append(timed(lambda at=at, result=result: result.update(evaluate_alarms(at))))
        assert result == {"evaluated": instances, "changed": 0}, result
        syncs.append(timed(lambda at=at: sync_watchdog_alarms(at)))
        reference.append(timed(lambda at=at: grouped_read(at)))
    pass_p90 = percentile(steady, .9)
    return {"database": database_url.split(":")[0], "instances": instances, "alarms": alarms,
            "samples": len(samples), "store_seconds": stored_seconds, "first_pass_s": first,
            "pass_s_median": statistics.median(steady), "pass_s_p90": pass_p90,
            "sync_s_median": statistics.median(syncs), "reference_s_median": statistics.median(reference),
            "alarms_per_s": instances / statistics.median(steady),
            "shortest_evaluate_seconds": max(PASS_SPACING, 2 * pass_p90)}


def report(result: dict) -> None:
    print(f"\n{result['database']}: {result['alarms']:,} watchdog alarms over {result['samples']:,} Alive samples "
          f"(stored in {result['store_seconds']:.1f} s)")
    print(f"  first pass (makes the alarms, each INSUFFICIENT_DATA -> OK): {result['first_pass_s']:.2f} s")
    print(f"  steady pass: median {result['pass_s_median']:.2f} s, p90 {result['pass_s_p90']:.2f} s "
          f"({result['alarms_per_s']:,.0f} alarms/s); of it the watchdog sync {result['sync_s_median']:.2f} s")
    print(f"  reference (every window in one grouped query): median {result['reference_s_median']:.3f} s; "
          f"ratio pass/reference {result['pass_s_median'] / result['reference_s_median']:.0f}")
    print(f"  watch.evaluate_seconds that leaves a pass half its period: at least "
          f"{result['shortest_evaluate_seconds']:.0f} s")


def main() -> None:
    if serve_child(child):
        return
    parser = per_database_parser(__doc__)
    parser.add_argument("--minutes", type=int, default=5, help="minutes of Alive samples before the passes")
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    if args.instances < 1 or args.minutes < 1 or args.passes < 1:
        parser.error("--instances, --minutes and --passes: at least 1")
    run_each(__file__, args, {"instances": args.instances, "minutes": args.minutes, "passes": args.passes}, report)


if __name__ == "__main__":
    main()
