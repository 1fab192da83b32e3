"""People's accounts: a Django user and its ``Account`` (owner-group and role) made, changed and removed together,
with the rules that keep a person from giving more than they hold. Whether the person may touch an account at all is
``clc.services.authz``'s rule, asked by the caller (page or API) before calling these functions."""

from __future__ import annotations

import logging
import secrets

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q, QuerySet

from clc.services import authz, logins
from luhyadb.choices import AccountRoleChoices as Role
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import Account, OwnerGroup

logger = logging.getLogger(__name__)

# Lowest first: a person may give a role up to their own, never above it.
ROLE_ORDER: tuple[str, ...] = (Role.USER, Role.POWERUSER, Role.POWERADM, Role.SUPERADM)
GENERATED_PASSWORD_BYTES = 12  # 16 URL-safe characters
NAME_MAX = 150


class AccountRefused(Exception):
    """An account operation was refused. ``status`` is 400 for a bad value or 403 for something the person may not
    do; ``field`` names the value it is about ("" for the request as a whole)."""

    def __init__(self, message: str, *, field: str = "", status: int = 403) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def rank(role: str | None) -> int:
    """A role's place in ``ROLE_ORDER`` (-1 for no role)."""
    return ROLE_ORDER.index(role) if role in ROLE_ORDER else -1


def outranks(actor: authz.Actor, role: str, path: str) -> bool:
    """Whether ``actor`` may manage an account of ``role`` in the owner-group at ``path`` (within their authority):
    one of a lower role, or of a role up to their own in a deeper owner-group, never a peer beside them (who could
    otherwise reset the other's password and take their account over). The cloud's root super administrators manage
    everyone, their peers included: somebody must be able to lock out a lost administrator account."""
    if actor.role == Role.SUPERADM and actor.path == authz.ROOT_PATH:
        return True
    if rank(role) < rank(actor.role):
        return True
    return rank(role) == rank(actor.role) and path.startswith(f"{actor.path}.")


def assignable_roles(actor: authz.Actor) -> list[str]:
    """The roles ``actor`` may give: their own and those below it."""
    return [role for role in ROLE_ORDER if rank(role) <= rank(actor.role)]


def find_accounts(query: str = "", role: str = "", group: str = "") -> QuerySet:
    """Accounts matching ``query`` (user name, first or last name, e-mail), of ``role`` and of owner-group path
    ``group`` (each ignored when empty), users and groups joined; the caller narrows it to what the person reads."""
    accounts = Account.objects.select_related("user", "owner_group")
    if query:
        accounts = accounts.filter(Q(user__username__icontains=query) | Q(user__first_name__icontains=query)
                                   | Q(user__last_name__icontains=query) | Q(user__email__icontains=query))
    if role:
        accounts = accounts.filter(role=role)
    if group:
        accounts = accounts.filter(owner_group__path=group)
    return accounts


def create_account(actor: authz.Actor, *, username: str, role: str, owner_group: OwnerGroup, password: str = "",
                   email: str = "", first_name: str = "", last_name: str = "",
                   is_active: bool = True) -> tuple[Account, str]:
    """Make a Django user and its account in one transaction. Without ``password`` one is generated; it is returned
    (once: only its hash is kept), else "" is returned with the account.

    Raises ``AccountRefused``: 400 naming the field for a bad or taken user name, a bad e-mail or name, an unknown
    role or a password the validators refuse; 403 for a role above the actor's own or an owner-group outside the
    actor's authority."""
    username = _checked_username(username)
    details = _checked_details(email=email, first_name=first_name, last_name=last_name)
    _check_role_value(role)
    _check_may_give(actor, role, owner_group)
    generated = "" if password else secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
    user_model = get_user_model()
    with transaction.atomic():
        # Never staff: staff means the Django admin's records and the other roles' APIs, which bypass the rule.
        user = user_model(username=username, is_active=is_active, is_staff=False, **details)
        if password:
            _check_password(password, user)
        user.set_password(password or generated)
        user.save()
        account = Account.objects.create(user=user, owner_group=owner_group, role=role)
    logger.info("accounts: %s created %s (%s of %s)", actor.username, username, role, owner_group.path)
    return account, generated


def change_account(actor: authz.Actor, account: Account, *, role: str | None = None,
                   owner_group: OwnerGroup | None = None, is_active: bool | None = None, email: str | None = None,
                   first_name: str | None = None, last_name: str | None = None) -> Account:
    """Change what is given (None = unchanged): role, owner-group, active (deactivate/activate), e-mail, names.

    Raises ``AccountRefused``: 400 naming the field for a bad value; 403 for an account whose role is above the
    actor's, a role above the actor's own, an owner-group outside the actor's authority, or a change of the actor's
    own role, owner-group or active flag (nobody demotes, moves or locks themselves out)."""
    _check_reach(actor, account)
    user = account.user
    own = account.user_id == actor.user_id
    details = _checked_details(email=email, first_name=first_name, last_name=last_name)
    if role is not None and role != account.role:
        _check_role_value(role)
        if own:
            raise AccountRefused("you may not change your own role; ask another administrator", field="role")
    if owner_group is not None and owner_group.pk != account.owner_group_id and own:
        raise AccountRefused("you may not move your own account to another owner-group", field="owner_group")
    if is_active is not None and is_active != user.is_active and own:
        raise AccountRefused("you may not deactivate your own account", field="is_active")
    new_role = account.role if role is None else role
    new_group = account.owner_group if owner_group is None else owner_group
    if new_role != account.role or new_group.pk != account.owner_group_id:
        _check_may_give(actor, new_role, new_group)
    with transaction.atomic():
        for name, value in details.items():
            setattr(user, name, value)
        if is_active is not None:
            user.is_active = is_active
        user.save()
        account.role, account.owner_group = new_role, new_group
        account.save()
    logger.info("accounts: %s changed %s (%s of %s, %s)", actor.username, user.username, new_role, new_group.path,
                "active" if user.is_active else "inactive")
    return account


def reset_password(actor: authz.Actor, account: Account, password: str = "") -> str:
    """Set ``password``, or a generated one that is returned (once); "" when one was given.

    Raises ``AccountRefused``: 400 (field ``password``) when the validators refuse it; 403 for an account whose role
    is above the actor's."""
    _check_reach(actor, account)
    user = account.user
    if password:
        _check_password(password, user)
    generated = "" if password else secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
    user.set_password(password or generated)
    user.save(update_fields=["password"])
    logger.info("accounts: %s reset the password of %s", actor.username, user.username)
    return generated


def delete_account(actor: authz.Actor, account: Account) -> None:
    """Delete the account and its Django user (the desktops assigned to them are kept, unassigned).

    Raises ``AccountRefused`` (403) for the actor's own account or one whose role is above the actor's."""
    _check_reach(actor, account)
    if account.user_id == actor.user_id:
        raise AccountRefused("you may not delete your own account; ask another administrator")
    username = account.user.username
    with transaction.atomic():
        account.user.delete()
    logger.info("accounts: %s deleted %s", actor.username, username)


def may_manage(actor: authz.Actor, account: Account) -> bool:
    """Whether ``actor`` may change, reset the password of, delete or unlock ``account`` (within their reach)."""
    try:
        _check_reach(actor, account)
    except AccountRefused:
        return False
    return True


def unlock_login(actor: authz.Actor, account: Account) -> int:
    """Lift the lock that failed logins put on the account's user name and forget them (``clc.services.logins``);
    return how many locks were lifted (0 or 1).

    Raises ``AccountRefused`` (403) for an account whose role is above the actor's or a peer's."""
    _check_reach(actor, account)
    return logins.unlock_account(account.user.username, by=actor.username)


def _check_role_value(role: str) -> None:
    if role not in ROLE_ORDER:
        raise AccountRefused(f"{role!r} is not a role (one of {', '.join(ROLE_ORDER)})", field="role", status=400)


def _check_reach(actor: authz.Actor, account: Account) -> None:
    if account.user_id == actor.user_id:
        return  # one's own details; the callers refuse changes of one's own role, group and active flag
    if rank(account.role) > rank(actor.role):
        raise AccountRefused(f"{account.user.username} is a {account.role}, above your role {actor.role}")
    if not outranks(actor, account.role, account.owner_group.path):
        raise AccountRefused(f"{account.user.username} is a {account.role} of {account.owner_group.path}, a peer of "
                             f"yours; ask a super administrator of {authz.ROOT_PATH}")


def _check_may_give(actor: authz.Actor, role: str, group: OwnerGroup) -> None:
    if rank(role) > rank(actor.role):
        raise AccountRefused(f"you may not give the role {role}, which is above your own ({actor.role})",
                             field="role")
    if not authz.allows(actor, "create", Type.ACCOUNT, group.path):
        raise AccountRefused(f"you may not place accounts in owner-group {group.path}: it is outside your authority "
                             f"({actor.path or 'none'})", field="owner_group")
    if not outranks(actor, role, group.path):
        raise AccountRefused(f"a {role} of {group.path} would be a peer of yours, whom you could not manage; give a "
                             f"lower role, a deeper owner-group, or ask a super administrator of {authz.ROOT_PATH}",
                             field="role")


def _checked_username(username: str) -> str:
    username = (username or "").strip()
    if not username or len(username) > NAME_MAX:
        raise AccountRefused(f"must be 1 to {NAME_MAX} characters", field="username", status=400)
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError as exc:
        raise AccountRefused(" ".join(exc.messages), field="username", status=400) from None
    if get_user_model().objects.filter(username__iexact=username).exists():
        raise AccountRefused(f"the user name {username!r} is taken", field="username", status=400)
    return username


def _checked_details(**values: str | None) -> dict[str, str]:
    """The given (not None) e-mail and names, stripped and checked."""
    checked = {}
    for field, value in values.items():
        if value is None:
            continue
        value = value.strip()
        if len(value) > NAME_MAX or any(ord(char) < 32 or char == "\x7f" for char in value):
            raise AccountRefused(f"must be at most {NAME_MAX} characters, without control characters", field=field,
                                 status=400)
        if field == "email" and value:
            try:
                validate_email(value)
            except ValidationError:
                raise AccountRefused(f"{value!r} is not an e-mail address", field=field, status=400) from None
        checked[field] = value
    return checked


def _check_password(password: str, user) -> None:
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        raise AccountRefused(" ".join(exc.messages), field="password", status=400) from None
