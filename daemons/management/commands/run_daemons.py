"""``manage.py run_daemons``: the background loops of this host's roles, without the web server."""

from django.conf import settings
from django.core.management.base import BaseCommand

from daemons.host import run_host
from daemons.stop_vms import HELP as STOP_VMS_HELP
from daemons.stop_vms import stop_vms_option


class Command(BaseCommand):
    help = "Run the heartbeats and queue consumers of this host's roles until stopped (SIGTERM or Ctrl-C)."

    def add_arguments(self, parser):
        parser.add_argument("--only", default="",
                            help="comma list of daemon names to run (e.g. clc-status,clc-sweeper)")
        parser.add_argument("--stop-vms", action="store_true", help=STOP_VMS_HELP)

    def handle(self, *args, only: str, stop_vms: bool, **options):
        names = {name.strip() for name in only.split(",") if name.strip()}
        run_host(settings.EDUCLOUD, serve_web=False, log=self.stdout.write, only=names,
                 stop_vms=stop_vms_option(stop_vms))
