"""Benchmark: what owner-group authorization costs on the API's lists and lookups.

A school district in the database: ``--schools`` schools x ``--classes`` classes (owner-groups ``edu.sN.cM``), each
class with ``--per-class`` desktops assigned to its students and images of its own. People: the root's super
administrator, a school's power administrator (reaches one school's subtree), a student (their own desktop only).
Each asks ``GET instances/?limit=50`` and ``GET instances/<id>/`` through Django's test client (the whole view:
authentication, the rule filtering in the database, serialization); the super administrator's answer is the
baseline, since their list is not narrowed. Prints p50/p99 per person and the ratio to the baseline.

Run: ``.venv/bin/python bench/authz_lists.py [--schools 20 --classes 10 --per-class 25 --calls 200]`` (SQLite; set
``EDUCLOUD_DATABASE_URL=mysql://root@127.0.0.1:3306/educloud_bench`` for MariaDB, database created beforehand).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
os.environ["EDUCLOUD_HOST_DATA_DIR"] = tempfile.mkdtemp(prefix="educloud-bench-authz-")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.test import Client  # noqa: E402

from luhyadb.models import Account, Image, Instance, OwnerGroup, OwnerGroupPermission, VMType  # noqa: E402
from luhyadb.services.initial_data import seed_initial_data  # noqa: E402

FULL = {"read": True, "write": True, "execute": True, "create": True, "delete": True}


@transaction.atomic
def district(schools: int, classes: int, per_class: int) -> dict[str, str]:
    """The records; returns an instance id each person may read (for the lookup)."""
    seed_initial_data()
    users = get_user_model().objects
    vm_type = VMType.objects.get(name="tiny")
    for school in range(schools):
        school_group = OwnerGroup.objects.create(name=f"school {school}", path=f"edu.s{school}")
        OwnerGroupPermission.objects.create(owner_group=school_group, resource_type="instance", **FULL)
        for klass in range(classes):
            group = OwnerGroup.objects.create(name=f"class {school}.{klass}", path=f"edu.s{school}.c{klass}")
            OwnerGroupPermission.objects.create(owner_group=group, resource_type="instance", read=True, execute=True)
            image = Image.objects.create(image_id=f"img-{school:03x}{klass:05x}", name=f"image {school}.{klass}",
                                         owner_group=group, current_version=1)
            students = users.bulk_create([get_user_model()(username=f"st-{school}-{klass}-{n}")
                                         for n in range(per_class)])
            Account.objects.bulk_create([Account(user=user, owner_group=group, role="user") for user in students])
            Instance.objects.bulk_create([
                Instance(instance_id=f"ins-{(school * classes + klass) * per_class + n:08x}",
                         name=f"desktop {school}.{klass}.{n}", kind="rvd", image=image, vm_type=vm_type,
                         owner_group=group, assigned_to=user) for n, user in enumerate(students)])
    admin = users.create_superuser("root-admin", password="x")
    head = users.create_user("head")
    Account.objects.create(user=head, owner_group=OwnerGroup.objects.get(path="edu.s0"), role="poweradm")
    student = users.get(username="st-0-0-0")
    student_instance = Instance.objects.get(assigned_to=student).instance_id
    return {"root super administrator": (admin, student_instance), "school power administrator": (head,
            student_instance), "student": (student, student_instance)}


def timed(client: Client, path: str, calls: int) -> list[float]:
    for _ in range(10):
        assert client.get(path).status_code == 200, path
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        client.get(path)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schools", type=int, default=20)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=25)
    parser.add_argument("--calls", type=int, default=200)
    options = parser.parse_args()
    call_command("migrate", verbosity=0)
    people = district(options.schools, options.classes, options.per_class)
    print(f"{Instance.objects.count()} desktops in {OwnerGroup.objects.count()} owner-groups, "
          f"{Account.objects.count()} accounts")
    baseline: dict[str, float] = {}
    for who, (user, insid) in people.items():
        client = Client()
        client.force_login(user)
        paths = (("list", "/clc/api/1.0/instances/?limit=50"), ("lookup", f"/clc/api/1.0/instances/{insid}/"))
        for what, path in paths:
            times = timed(client, path, options.calls)
            p50, p99 = statistics.median(times), sorted(times)[int(0.99 * len(times))]
            baseline.setdefault(what, p50)
            print(f"{who:28} {what:6}: p50 {p50 * 1e3:6.2f} ms, p99 {p99 * 1e3:6.2f} ms, "
                  f"{p50 / baseline[what]:.2f} x the super administrator's")


if __name__ == "__main__":
    main()
