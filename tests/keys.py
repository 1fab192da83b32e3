"""Hosts' keys for tests that call as another host than the test host itself: a key pair made in memory and its
active record on the test host (which runs the CLC, so its records are what every role trusts)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.utils import timezone

from luhyaapi.keys import HostKey
from luhyadb.choices import HostKindChoices, KeyStateChoices
from luhyadb.models import HostCredential


def new_key(name: str) -> HostKey:
    """A key pair for ``name`` that nobody trusts (yet)."""
    return HostKey(name, Ed25519PrivateKey.generate())


def enrolled_key(name: str, *roles: str, cluster: str = "cluster1", mac: str = "") -> HostKey:
    """A key pair for host ``name``, trusted as a server of ``roles`` (default nc) or, with role ``pc``, as the
    classroom PC of ``mac``."""
    return trusted(new_key(name), *roles, cluster=cluster, mac=mac)


def trusted(key: HostKey, *roles: str, cluster: str = "cluster1", mac: str = "") -> HostKey:
    """``key`` (this host's own, say, when the test host plays another host beside it) trusted under its name as
    ``enrolled_key`` trusts a new one."""
    name = key.name
    pc = roles == ("pc",)
    HostCredential.objects.update_or_create(name=name, defaults={
        "kind": HostKindChoices.PC if pc else HostKindChoices.SERVER,
        "roles": "nc" if pc else ",".join(roles or ("nc",)),
        "cluster": cluster, "mac": mac, "public_key": key.public_key, "fingerprint": key.fingerprint,
        "state": KeyStateChoices.ACTIVE, "requested_at": timezone.now(), "approved_at": timezone.now(),
        "approved_by": "test"})
    return key
