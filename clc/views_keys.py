"""Pages of the admin console for hosts' keys and join tokens: the keys a person may manage (approve a waiting one,
reject or revoke), and join tokens (issue one, whose secret is shown once; withdraw one). Thin adapters over
``clc.services.enrolment``, which decides who may manage which key and token."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.generic import FormView, ListView, View

from clc.forms import GroupChoiceField
from clc.services import authz, enrolment
from clc.views import AuthorizedMixin, back_to_list
from luhyaapi.trust import PEER_CACHE_SECONDS
from luhyaapi.validators import InvalidValue, validate_name
from luhyadb.choices import HostKindChoices, RoleChoices
from luhyadb.choices import KeyStateChoices as State
from luhyadb.models import HostCredential

STATE_FILTERS = (("", "All"), *State.choices)


class KeysMixin(AuthorizedMixin):
    """Pages of keys and join tokens: for people who manage the keys of some hosts (``enrolment.key_kinds``)."""

    def require_page(self) -> None:
        if not enrolment.key_kinds(self.actor):
            raise authz.Denied("you may not manage hosts' keys: the root's administrators and whoever may create "
                               "classroom PCs may")

    def key(self, name: str) -> HostCredential:
        """The key of host ``name`` among those the person may manage (else 404)."""
        try:
            name = validate_name(name, "name")
        except InvalidValue:
            raise Http404("no such key") from None
        return get_object_or_404(enrolment.manageable(self.actor), name=name)


class KeyListView(KeysMixin, ListView):
    """The keys the person may manage, waiting ones first: what each host is, its fingerprint, where and when it
    asked, and who approved or revoked it; filter by state, search by name, MAC or fingerprint."""

    template_name = "clc/hosts/keys.html"
    paginate_by = 25

    def filters(self) -> dict[str, str]:
        state = self.request.GET.get("state", "")
        return {"query": self.request.GET.get("q", "").strip(), "state": state if state in State.values else ""}

    def get_queryset(self):
        return enrolment.find_keys(self.actor, **self.filters())

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        for key in context["object_list"]:
            key.approved_by_shown = enrolment.acted_by(self.actor, key.approved_by)
            key.revoked_by_shown = enrolment.acted_by(self.actor, key.revoked_by)
        return context | self.filters() | {
            "states": STATE_FILTERS, "kinds": enrolment.key_kinds(self.actor), "path": self.actor.path}


def _named(key: HostCredential) -> str:
    return f"The key of {key.name} ({key.fingerprint})"


class KeyApproveView(KeysMixin, View):
    """Approve a waiting key (POST): the host is trusted from then on; a refusal says why."""

    def post(self, request, name: str):
        key = self.key(name)
        try:
            enrolment.approve(key, self.actor, request.POST.get("fingerprint", ""))
        except (enrolment.EnrolmentRefused, authz.Denied) as refused:
            messages.error(request, f"{_named(key)} was not approved: {refused}")
        else:
            messages.success(request, f"{_named(key)} is approved: {key.name} is trusted from now on.")
        return back_to_list(request, "clc:keys")


class KeyRevokeView(KeysMixin, View):
    """Reject a waiting key or revoke an active one (POST): the host's calls are refused until it enrols again and
    is approved; a refusal says why."""

    def post(self, request, name: str):
        key = self.key(name)
        if key.state == State.REVOKED:
            messages.error(request, f"{_named(key)} was revoked already.")
            return back_to_list(request, "clc:keys")
        verb = "rejected" if key.state == State.PENDING else "revoked"
        try:
            enrolment.revoke(key, self.actor)
        except (enrolment.EnrolmentRefused, authz.Denied) as refused:
            messages.error(request, f"{_named(key)} was not {verb}: {refused}")
            return back_to_list(request, "clc:keys")
        if verb == "rejected":
            messages.success(request, f"{_named(key)} is rejected: {key.name} may enrol again and wait for approval.")
        else:
            messages.success(request, f"{_named(key)} is revoked: the calls of {key.name} are refused (by the other "
                                      f"hosts within {PEER_CACHE_SECONDS} seconds) until it enrols again and is "
                                      "approved.")
        return back_to_list(request, "clc:keys")


class JoinTokenForm(forms.Form):
    """A new join token: for servers of some roles or for classroom PCs going into an owner-group, of one
    cluster; only the kinds and owner-groups the person may give are offered, and the service checks them again."""

    label = forms.CharField(required=False, max_length=100, help_text="a note for the list, e.g. “Room 12, 30 PCs”")
    kind = forms.ChoiceField(widget=forms.RadioSelect, label="For")
    cluster = forms.CharField(max_length=63, help_text="the cluster the hosts join (their host.cluster)")
    roles = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Server roles",
        choices=[(role, dict(RoleChoices.choices)[role]) for role in enrolment.SERVER_ROLES],
        help_text="servers only: the roles they may run (their host.roles)")
    owner_group = GroupChoiceField(queryset=None, to_field_name="path", required=False, label="Owner-group",
                                   empty_label="(none: they stay without one)",
                                   help_text="classroom PCs only: the owner-group they go into")
    uses = forms.IntegerField(initial=1, widget=forms.NumberInput(attrs={"min": 1, "max": enrolment.TOKEN_USES_MAX}),
                              help_text="how many hosts may enrol with it: 30 for a class of 30 PCs")
    hours = forms.FloatField(initial=enrolment.TOKEN_HOURS_DEFAULT, label="Good for (hours)",
                             widget=forms.NumberInput(attrs={"max": enrolment.TOKEN_HOURS_MAX, "step": "any"}))

    fieldsets = (("Token", ("label", "kind", "cluster", "uses", "hours")), ("Servers", ("roles",)),
                 ("Classroom PCs", ("owner_group",)))

    def __init__(self, *args, actor: authz.Actor, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        kinds = enrolment.key_kinds(actor)
        self.fields["kind"].choices = [(kind, label) for kind, label in HostKindChoices.choices if kind in kinds]
        self.fields["kind"].initial = HostKindChoices.PC
        self.fields["owner_group"].queryset = authz.groups_within(actor)
        if HostKindChoices.SERVER not in kinds:
            del self.fields["roles"]

    def groups(self) -> list[tuple[str, list]]:
        """The fields in their fieldsets (those the person has), for the template."""
        shown = [(title, [self[name] for name in names if name in self.fields]) for title, names in self.fieldsets]
        return [(title, fields) for title, fields in shown if fields]

    def clean_cluster(self) -> str:
        try:
            return validate_name(self.cleaned_data["cluster"], "cluster")
        except InvalidValue as exc:
            raise forms.ValidationError(exc.message) from None

    def refused(self, field: str, message: str) -> None:
        """Show a refusal of the service next to its field."""
        self.add_error(field if field in self.fields else None, message)


class JoinTokenListView(KeysMixin, ListView):
    """The join tokens the person may see: what each enrols, its uses left, when it expires, who issued it."""

    template_name = "clc/hosts/tokens.html"
    paginate_by = 25

    def get_queryset(self):
        return enrolment.tokens_of(self.actor)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        now = timezone.now()
        for token in context["page_obj"]:
            token.standing = enrolment.token_standing(token, now)
        return context | {"kinds": enrolment.key_kinds(self.actor)}


class JoinTokenCreateView(KeysMixin, FormView):
    """Issue a join token; its secret is on the answer's page, the only time it is shown (never cached)."""

    template_name = "clc/hosts/token_form.html"
    form_class = JoinTokenForm

    def get_form_kwargs(self):
        return super().get_form_kwargs() | {"actor": self.actor}

    def form_valid(self, form):
        values = form.cleaned_data
        try:
            issued = enrolment.issue_join_token(
                self.actor, kind=values["kind"], cluster=values["cluster"], roles=values.get("roles"),
                owner_group=values["owner_group"], uses=values["uses"], hours=values["hours"], label=values["label"])
        except enrolment.EnrolmentRefused as exc:
            form.refused(exc.field, str(exc))
            return self.form_invalid(form)
        except authz.Denied as denied:
            form.refused("owner_group" if values["kind"] == HostKindChoices.PC else "kind", str(denied))
            return self.form_invalid(form)
        response = render(self.request, "clc/hosts/token_shown.html", {"token": issued.record,
                                                                       "secret": issued.secret})
        response["Cache-Control"] = "no-store"
        return response


class JoinTokenWithdrawView(KeysMixin, View):
    """Withdraw a join token (POST): nothing enrols with it any more; the hosts it enrolled stay."""

    def post(self, request, pk: int):
        token = get_object_or_404(enrolment.tokens_of(self.actor), pk=pk)
        enrolment.withdraw_token(token)
        messages.success(request, f"Join token {token.label or pk} withdrawn: no host enrols with it any more (the "
                                  "hosts it enrolled stay).")
        return back_to_list(request, "clc:tokens")
