"""Pages of the admin console for people: their accounts (list, create, edit, reset a password, unlock after failed
logins, delete), one's own account and password, and the console's front page, which sends each person where they
have pages. Thin adapters over ``clc.services.accounts``; who may see and change which account is
``clc.services.authz``'s rule."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.generic import FormView, ListView, View
from django.views.generic.base import TemplateResponseMixin

from clc.api.authz import actor
from clc.context_processors import console_links
from clc.forms import GroupChoiceField
from clc.services import authz, logins
from clc.services.accounts import (
    AccountRefused,
    assignable_roles,
    change_account,
    create_account,
    delete_account,
    find_accounts,
    may_manage,
    reset_password,
    unlock_login,
)
from clc.views import AuthorizedMixin, SystemStatusView
from luhyadb.choices import AccountRoleChoices as Role
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import Account

PERSON_FIELDS = ("first_name", "last_name", "email")
# So that a browser never fills in the administrator's own saved password.
NEW_PASSWORD = forms.PasswordInput(attrs={"autocomplete": "new-password"})


class UsernameConverter:
    """A URL part that may be a Django user name (letters, digits and ``@.+-_``); anything else is a plain 404."""

    regex = r"[\w.@+-]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class AccountForm(forms.Form):
    """What an administrator sets of an account: the person's names and e-mail, role, owner-group and whether it
    may log in. Only the roles and owner-groups ``actor`` may give are offered; the service checks them again."""

    first_name = forms.CharField(required=False, max_length=150)
    last_name = forms.CharField(required=False, max_length=150)
    email = forms.EmailField(required=False, label="E-mail")
    role = forms.ChoiceField()
    owner_group = GroupChoiceField(queryset=None, to_field_name="path", label="Owner-group")
    is_active = forms.BooleanField(required=False, initial=True, label="Active",
                                   help_text="an inactive account cannot log in")

    def __init__(self, *args, actor: authz.Actor, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        labels = dict(Role.choices)
        self.fields["role"].choices = [(role, labels[role]) for role in assignable_roles(actor)]
        self.fields["owner_group"].queryset = authz.groups_within(actor)

    def refused(self, exc: AccountRefused) -> None:
        """Show a refusal of the service next to its field."""
        self.add_error(exc.field if exc.field in self.fields else None, str(exc))


class PasswordForm(forms.Form):
    """A password typed twice, or nothing to have one generated."""

    password = forms.CharField(required=False, strip=False, widget=NEW_PASSWORD,
                               help_text="leave both empty to generate one, shown once")
    password2 = forms.CharField(required=False, strip=False, widget=NEW_PASSWORD, label="Password again")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password", "") != cleaned.get("password2", ""):
            self.add_error("password2", "the two passwords differ")
        return cleaned

    def refused(self, exc: AccountRefused) -> None:
        self.add_error(exc.field if exc.field in self.fields else None, str(exc))


class AccountCreateForm(PasswordForm, AccountForm):
    """A new account: its user name, what ``AccountForm`` sets, and its first password."""

    username = forms.CharField(max_length=150, label="User name",
                               help_text="letters, digits and @ . + - _ only; it never changes")
    field_order = ("username", "first_name", "last_name", "email", "role", "owner_group", "is_active", "password",
                   "password2")


def _shown_once(request, account: Account, password: str):
    """The page that shows a generated password, the only time it is shown; never cached."""
    response = render(request, "clc/accounts/password_shown.html", {"account": account, "password": password})
    response["Cache-Control"] = "no-store"
    return response


class AccountMixin(AuthorizedMixin):
    """Pages of one account, found by user name among those the person may read (else 404)."""

    resource_type = Type.ACCOUNT

    def account(self) -> Account:
        return self.authorized(Account.objects.select_related("user", "owner_group"),
                               user__username=self.kwargs["username"])


class AccountListView(AuthorizedMixin, ListView):
    """Accounts in the person's authority: user name, name, e-mail, role, owner-group, active, last login; search by
    user name, name or e-mail, filter by role and owner-group."""

    template_name = "clc/accounts/list.html"
    paginate_by = 25
    resource_type = Type.ACCOUNT

    def filters(self) -> dict[str, str]:
        role, group = self.request.GET.get("role", ""), self.request.GET.get("group", "")
        return {"query": self.request.GET.get("q", "").strip(), "role": role if role in Role.values else "",
                "group": group[:255]}

    def get_queryset(self):
        return self.readable(find_accounts(**self.filters()))

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | self.filters() | {
            "roles": Role.choices, "groups": authz.groups_within(self.actor),
            # The first administrator is a superuser without an account: the empty list must not deny they exist.
            "has_account": Account.objects.filter(user_id=self.request.user.pk).exists()}


class AccountCreateView(AuthorizedMixin, FormView):
    """Create an account; a generated first password is shown once on the next page."""

    template_name = "clc/accounts/form.html"
    form_class = AccountCreateForm
    resource_type, action = Type.ACCOUNT, "create"

    def get_form_kwargs(self):
        return super().get_form_kwargs() | {"actor": self.actor}

    def form_valid(self, form):
        values = form.cleaned_data
        try:
            account, generated = create_account(
                self.actor, username=values["username"], role=values["role"], owner_group=values["owner_group"],
                password=values["password"], is_active=values["is_active"],
                **{field: values[field] for field in PERSON_FIELDS})
        except AccountRefused as exc:
            form.refused(exc)
            return self.form_invalid(form)
        if generated:
            return _shown_once(self.request, account, generated)
        messages.success(self.request, f"Account {account.user.username} created.")
        return redirect("clc:accounts")


class AccountUpdateView(AccountMixin, FormView):
    """Change an account's names, e-mail, role, owner-group and whether it may log in."""

    template_name = "clc/accounts/form.html"
    form_class = AccountForm
    action = "write"

    def get_form_kwargs(self):
        self.object = self.account()
        return super().get_form_kwargs() | {"actor": self.actor}

    def get_initial(self):
        user = self.object.user
        return {"first_name": user.first_name, "last_name": user.last_name, "email": user.email,
                "role": self.object.role, "owner_group": self.object.owner_group, "is_active": user.is_active}

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {
            "object": self.object, "own": self.object.user_id == self.actor.user_id,
            "login_lock": logins.lock_of_account(self.object.user.username),
            "may_unlock": may_manage(self.actor, self.object)}

    def form_valid(self, form):
        values = form.cleaned_data
        try:
            change_account(self.actor, self.object, role=values["role"], owner_group=values["owner_group"],
                           is_active=values["is_active"], **{field: values[field] for field in PERSON_FIELDS})
        except AccountRefused as exc:
            form.refused(exc)
            return self.form_invalid(form)
        messages.success(self.request, f"Account {self.object.user.username} saved.")
        return redirect("clc:accounts")


class AccountPasswordView(AccountMixin, FormView):
    """Set an account's password, or generate one that is shown once."""

    template_name = "clc/accounts/password_reset.html"
    form_class = PasswordForm
    action = "write"

    def get_form_kwargs(self):
        self.object = self.account()
        return super().get_form_kwargs()

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {"object": self.object}

    def form_valid(self, form):
        account = self.object
        try:
            generated = reset_password(self.actor, account, form.cleaned_data["password"])
        except AccountRefused as exc:
            form.refused(exc)
            return self.form_invalid(form)
        if generated:
            return _shown_once(self.request, account, generated)
        messages.success(self.request, f"The password of {account.user.username} was set.")
        return redirect("clc:account-edit", username=account.user.username)


class AccountUnlockView(AccountMixin, View):
    """Lift the lock that failed logins put on the account (POST), for who may manage it."""

    action = "write"

    def post(self, request, username: str):
        try:
            unlocked = unlock_login(self.actor, self.account())
        except AccountRefused as exc:
            messages.error(request, f"Not unlocked: {exc}")
        else:
            messages.success(request, f"{username} may log in again." if unlocked else f"{username} was not locked.")
        return redirect("clc:account-edit", username=username)


class AccountDeleteView(AccountMixin, TemplateResponseMixin, View):
    """Ask for confirmation (GET), then delete (POST); one's own account is refused."""

    template_name = "clc/accounts/confirm_delete.html"
    action = "delete"

    def get(self, request, username: str):
        account = self.account()
        return self.render_to_response({"object": account, "own": account.user_id == self.actor.user_id})

    def post(self, request, username: str):
        account = self.account()
        try:
            delete_account(self.actor, account)
        except AccountRefused as exc:
            messages.error(request, f"Not deleted: {exc}")
            return redirect("clc:account-edit", username=username)
        messages.success(request, f"Account {username} deleted.")
        return redirect("clc:accounts")


class MyAccountView(auth_views.PasswordChangeView):
    """Any logged-in person: their account (role, owner-group) and a form to change their own password."""

    template_name = "clc/accounts/mine.html"
    success_url = reverse_lazy("clc:my-account")

    def get_context_data(self, **kwargs):
        account = Account.objects.select_related("owner_group").filter(user_id=self.request.user.pk).first()
        return super().get_context_data(**kwargs) | {"account": account}

    def form_valid(self, form):
        messages.success(self.request, "Your password was changed.")
        return super().form_valid(form)


class ConsoleHomeView(SystemStatusView):
    """The console's front page (``/clc/``, where logging in leads): the system status for those who may read it;
    other people with an account go where they have pages: to the images if they may read them, else to their
    desktops (``/portal/``). A login without an account gets the 403 that says so."""

    def dispatch(self, request, *args, **kwargs):
        person = actor(request)
        if person.is_person:
            links = console_links(person, request.user)
            if not links["status"]:
                return redirect("clc:images" if links["images"] else "/portal/")
        return super().dispatch(request, *args, **kwargs)
