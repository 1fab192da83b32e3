"""Django app config of the cloud controller: the hosts' keys this host trusts are its own records."""

from django.apps import AppConfig


class ClcConfig(AppConfig):
    name = "clc"
    verbose_name = "Cloud controller"

    def ready(self) -> None:
        from clc.services.enrolment import peer_of
        from luhyaapi import trust

        trust.set_local_resolver(peer_of)
