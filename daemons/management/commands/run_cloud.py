"""``manage.py run_cloud``: this host's web server and daemons in one process (the all-in-one way to run)."""

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from daemons.host import daemon_names, run_host
from daemons.stop_vms import HELP as STOP_VMS_HELP
from daemons.stop_vms import stop_vms_option


class Command(BaseCommand):
    help = "Initialise if needed, then serve the web API and run every daemon of this host's roles until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--no-init", action="store_true", help="skip the idempotent init_cloud step")
        parser.add_argument("--without", default="", type=daemon_names,
                            help="comma list of daemon names not to run (e.g. celery-worker, where a celery worker "
                                 "of its own runs the node's commands)")
        parser.add_argument("--stop-vms", action="store_true", help=STOP_VMS_HELP)

    def handle(self, *args, no_init: bool, without: set[str], stop_vms: bool, **options):
        stop_vms = stop_vms_option(stop_vms)
        if not no_init:
            call_command("init_cloud", stdout=self.stdout)
        run_host(settings.EDUCLOUD, serve_web=True, log=self.stdout.write, without=without, stop_vms=stop_vms)
