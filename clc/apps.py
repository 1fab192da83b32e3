"""Django app config of the cloud controller: the hosts' keys this host trusts and where runs are placed are its own
records, and sessions start with the idle limit of their kind of person."""

from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in


class ClcConfig(AppConfig):
    name = "clc"
    verbose_name = "Cloud controller"

    def ready(self) -> None:
        from clc.services.enrolment import peer_of, peers_of
        from clc.services.instances import placement_of
        from clc.services.sessions import start_session
        from luhyaapi import bus_trust, trust

        trust.set_local_resolver(peer_of, peers_of)
        bus_trust.set_placement(placement_of)

        user_logged_in.connect(start_session, dispatch_uid="clc.services.sessions.start_session")
