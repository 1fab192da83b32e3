"""``manage.py init_cloud``: create the tables, the first administrator and the initial data (idempotent)."""

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from luhyadb.services.initial_data import ensure_superuser, seed_initial_data


class Command(BaseCommand):
    help = "Create the tables, the first administrator and the initial data; safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--admin", default="admin", help="user name of the first administrator (default admin)")

    def handle(self, *args, admin: str, **options):
        config = settings.EDUCLOUD
        config.data_dir.mkdir(parents=True, exist_ok=True)
        (config.data_dir / "static").mkdir(exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write(f"tables ready in {settings.DATABASES['default']['NAME']}")
        if not config.has_role("clc"):
            return
        seed_initial_data()
        self.stdout.write("initial data ready (VM types, root owner-group 'edu')")
        from clc.services.jobs import ensure_job_schedules  # a CLC's app (django-celery-beat is installed with it)

        for name in ensure_job_schedules():
            self.stdout.write(f"periodic job scheduled: {name}")
        password = ensure_superuser(admin, config.data_dir)
        if password:
            self.stdout.write(f"administrator {admin!r} created; password {password} "
                              f"(kept in {config.data_dir / 'admin-password'})")
        else:
            self.stdout.write(f"administrator {admin!r} already exists")
