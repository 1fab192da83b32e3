"""``manage.py issue_join_token``: a join token that enrols servers of some roles, or classroom PCs, without
waiting for an administrator's approval (docs/security.md); printed once, on the CLC host, as its administrator."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from clc.services import authz
from clc.services.enrolment import TOKEN_HOURS_DEFAULT, EnrolmentRefused, issue_join_token
from luhyaapi.validators import InvalidValue, validate_name
from luhyadb.choices import AccountRoleChoices, HostKindChoices
from luhyadb.models import OwnerGroup

# Whoever runs commands on the CLC host is its administrator.
HOST_ADMINISTRATOR = authz.Actor(username="manage.py", path=authz.ROOT_PATH, role=AccountRoleChoices.SUPERADM)


class Command(BaseCommand):
    help = "Issue a join token for servers (--kind server --roles cc,nc) or classroom PCs (--kind pc); prints it."

    def add_arguments(self, parser):
        parser.add_argument("--kind", choices=HostKindChoices.values, required=True)
        parser.add_argument("--cluster", required=True, help="the cluster the hosts join")
        parser.add_argument("--roles", default="", help="servers: comma list of roles, e.g. cc or nc,sc")
        parser.add_argument("--owner-group", default="", help="PCs: the owner-group path they go into")
        parser.add_argument("--uses", type=int, default=1, help="how many hosts may enrol with it (default 1)")
        parser.add_argument("--hours", type=float, default=TOKEN_HOURS_DEFAULT,
                            help=f"how long it is good for (default {TOKEN_HOURS_DEFAULT})")
        parser.add_argument("--label", default="", help="a note shown in the console's list of tokens")

    def handle(self, *args, kind: str, cluster: str, roles: str, owner_group: str, uses: int, hours: float,
               label: str, **options):
        try:
            cluster = validate_name(cluster, "cluster")
        except InvalidValue as exc:
            raise CommandError(str(exc)) from None
        group = None
        if owner_group:
            group = OwnerGroup.objects.filter(path=owner_group).first()
            if group is None:
                raise CommandError(f"--owner-group: no owner-group {owner_group!r}")
        try:
            issued = issue_join_token(HOST_ADMINISTRATOR, kind=kind, cluster=cluster, owner_group=group, uses=uses,
                                      hours=hours, label=label,
                                      roles=[role.strip() for role in roles.split(",") if role.strip()])
        except EnrolmentRefused as exc:
            raise CommandError(f"--{exc.field.replace('_', '-')}: {exc}" if exc.field else str(exc)) from None
        self.stderr.write(f"join token for {kind} of cluster {cluster}, {uses} use(s), until "
                          f"{issued.record.expires:%Y-%m-%d %H:%M} UTC; put it in host.join_token:")
        self.stdout.write(issued.secret)
