"""What the CLC and a storage controller say to each other about WebDAV shares: where the shares are mounted, the
question the SC asks about a login (``POST /clc/api/1.0/dav/authorize/``, signed) and the CLC's answer.

The SC keeps no user list: the CLC checks the password and decides with its one owner-group rule (type ``share``)
which owner-group shares the login may read or write; the SC maps each request onto that answer (``sc.dav.access``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

MOUNT = "/sc/dav"
AUTHORIZE_PATH = "/clc/api/1.0/dav/authorize/"


class ShareGrant(BaseModel):
    """One owner-group's share as a login reaches it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    read: bool
    write: bool


class ShareLogin(BaseModel):
    """The CLC's answer about a WebDAV login: ``authenticated`` False with ``detail`` (a wrong password, a locked
    user name or address, a login without an account), else the account's user name (its home folder's name),
    owner-group and the shares it reaches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    authenticated: bool
    detail: str = ""
    username: str = ""
    owner_group: str = ""
    shares: tuple[ShareGrant, ...] = ()

    def share(self, path: str) -> ShareGrant | None:
        return next((share for share in self.shares if share.path == path), None)
