"""``manage.py expire_uploads``: delete the uploads nobody has written to for a while, with their partial data."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from walrus.services.store import expire_uploads


class Command(BaseCommand):
    help = ("Delete open uploads not written to for walrus.upload_expiry_hours (or --hours), with their partial "
            "files. The walrus daemon does this every hour by itself; this is for cron or a one-off clean-up.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--hours", type=float, default=None,
                            help="idle time after which an upload is deleted (default: walrus.upload_expiry_hours)")

    def handle(self, *args, hours: float | None, **options) -> None:
        if hours is not None and hours <= 0:
            raise CommandError("--hours must be more than 0")
        seconds = hours * 3600 if hours is not None else settings.EDUCLOUD.upload_expiry_seconds
        expired = expire_uploads(seconds)
        self.stdout.write(f"{len(expired)} upload(s) expired" + (f": {', '.join(expired)}" if expired else ""))
