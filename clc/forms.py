"""Forms of the admin console."""

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils.text import capfirst

from clc.services import authz, logins
from clc.services.images import MAX_IMAGE_APPS
from clc.services.instances import MONITORING_HELP
from clc.services.networks import NETWORK_FIELDS, NetworkInvalid, network_settings, validate_network
from clc.services.portal import SCREENS
from luhyaapi.validators import MAX_SERVICE_PORTS, InvalidValue, validate_display_name, validate_ports
from luhyadb.choices import InstanceKindChoices, RoleChoices
from luhyadb.models import APP_NAME_LENGTH, MAX_DATA_DISK_MB, ClusterNetwork, Image, ImageApp, Instance, Server, VMType


class ThrottledLoginMixin:
    """A login form that says when to try again when the throttle refused the login (``clc.services.logins``)
    instead of "did not match"."""

    def get_invalid_login_error(self):
        refused = logins.refusal_of(self.request)
        if refused is not None:
            return ValidationError(str(refused), code="throttled")
        return super().get_invalid_login_error()


class LoginForm(ThrottledLoginMixin, AuthenticationForm):
    """The console's and the portal's login."""

    error_messages = AuthenticationForm.error_messages | {
        "invalid_login": "Your user name and password did not match. Please try again."}


class AdminLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    """The Django admin's login (``/admin/login/``)."""


class AuthorityForm(forms.ModelForm):
    """A record's form that offers only the owner-groups (and images) in the person's authority (``actor``)."""

    def __init__(self, *args, actor: authz.Actor | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if actor is None:
            return
        if "owner_group" in self.fields:
            self.fields["owner_group"].queryset = authz.groups_within(actor)
        if "image" in self.fields:
            self.fields["image"].queryset = authz.readable(actor, self.fields["image"].queryset)


class GroupChoiceField(forms.ModelChoiceField):
    """An owner-group chosen by its path, shown with its name."""

    def label_from_instance(self, obj) -> str:
        return f"{obj.path} ({obj.name})"


class ImageForm(AuthorityForm):
    """An image's properties (the notes' list) and whether its guests serve Remote Desktop; the file is uploaded on
    the image's page, its published apps are ``ImageAppFormSet`` beside this form."""

    class Meta:
        model = Image
        fields = ("name", "os_type", "arch", "usage", "owner_group", "description", "rdp")
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}

    def clean_name(self) -> str:
        try:
            return validate_display_name(self.cleaned_data["name"])
        except InvalidValue as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_description(self) -> str:
        description = self.cleaned_data["description"]
        if "\x00" in description:
            raise forms.ValidationError("may not contain NUL characters")
        return description


class ImageAppForm(forms.ModelForm):
    """One published app of an image: its name, its program (``||alias`` or a path on the guest) and an icon's URL."""

    class Meta:
        model = ImageApp
        fields = ("name", "program", "icon")

    def clean_name(self) -> str:
        try:
            return validate_display_name(self.cleaned_data["name"], "name", APP_NAME_LENGTH)
        except InvalidValue as exc:
            raise forms.ValidationError(exc.message) from None


class BaseImageAppFormSet(forms.BaseInlineFormSet):
    """An image's apps: each name once, whatever its case (the database may compare names without it)."""

    def clean(self) -> None:
        super().clean()
        kept = [form for form in self.forms if form.has_changed() and not self._should_delete_form(form)]
        names = [form.cleaned_data["name"] for form in kept if "name" in form.cleaned_data]
        folded = [name.casefold() for name in names]
        twice = sorted({name for name in names if folded.count(name.casefold()) > 1})
        if twice:
            raise forms.ValidationError(f"each app's name once: {', '.join(twice)} more than once")


ImageAppFormSet = forms.inlineformset_factory(Image, ImageApp, form=ImageAppForm, formset=BaseImageAppFormSet,
                                              extra=1, can_delete=True, max_num=MAX_IMAGE_APPS, validate_max=True)


class RdpFileForm(forms.Form):
    """How the portal's ``.rdp`` file shows the desktop: full screen, or a window of one of the usual sizes."""

    screen = forms.ChoiceField(choices=[(key, "Full screen" if key == "full" else f"Window {key.replace('x', ' x ')}")
                                        for key in SCREENS], required=False, initial="full")

    def clean_screen(self) -> str:
        return self.cleaned_data["screen"] or "full"


class PortListField(forms.CharField):
    """Guest TCP ports typed as ``80, 443``: whole numbers 1-65535, each once, at most ``max_ports``."""

    def __init__(self, *, max_ports: int = MAX_SERVICE_PORTS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_ports = max_ports

    def prepare_value(self, value):
        if isinstance(value, list):
            return ", ".join(str(port) for port in value)
        return value

    def to_python(self, value) -> list[int]:
        text = super().to_python(value)
        try:
            return validate_ports(filter(None, (part.strip() for part in text.split(","))), max_ports=self.max_ports)
        except InvalidValue as exc:
            raise forms.ValidationError(exc.message) from None


class InstanceForm(AuthorityForm):
    """A new instance: what it is made of (only images that have a file), its size, owner and reachable ports."""

    services = PortListField(required=False, help_text="guest TCP ports to reach from outside, e.g. 22, 80")
    pinned_node = forms.ChoiceField(required=False, help_text="run only on this node controller")
    data_disk_mb = forms.IntegerField(required=False, min_value=0, max_value=MAX_DATA_DISK_MB, initial=0,
                                      help_text="a personal data disk of this many MiB for the person it is the "
                                                "desktop of, kept across resets (0: none)")

    class Meta:
        model = Instance
        fields = ("name", "kind", "image", "vm_type", "owner_group", "persistent", "services", "pinned_node",
                  "assigned_to", "data_disk_mb", "monitoring", "restart_when_dead")
        labels = {"vm_type": "VM type", "owner_group": "Owner-group", "assigned_to": "Desktop of",
                  "data_disk_mb": "Data disk (MiB)"}
        help_texts = {"monitoring": MONITORING_HELP}

    def __init__(self, *args, actor: authz.Actor | None = None, **kwargs) -> None:
        super().__init__(*args, actor=actor, **kwargs)
        if "image" in self.fields:
            self.fields["image"].queryset = self.fields["image"].queryset.filter(current_version__gt=0)
        # Offer only people and nodes the person may know of: accounts in their authority (and whoever the desktop
        # is already assigned to), node controllers for the root's administrators (servers are the whole cloud's).
        people = get_user_model().objects.filter(account__isnull=False)
        servers = Server.objects.filter(role=RoleChoices.NC)
        if actor is not None:
            assigned = Q(pk=self.instance.assigned_to_id) if self.instance.assigned_to_id else Q(pk__in=[])
            people = people.filter(Q(account__owner_group__in=authz.groups_within(actor)) | assigned)
            servers = authz.readable(actor, servers)
        self.fields["assigned_to"].queryset = people.order_by("username")
        nodes = [(node.name, f"{node.name} (cluster {node.cluster}, {node.state})") for node in servers]
        pinned = self.instance.pinned_node
        # Keep a pin to a node that has since left, so saving other changes does not fail on it.
        if pinned and pinned not in dict(nodes):
            nodes.append((pinned, f"{pinned} (no longer a node controller)"))
        self.fields["pinned_node"].choices = [("", "any node that fits")] + nodes

    def clean_data_disk_mb(self) -> int:
        return self.cleaned_data.get("data_disk_mb") or 0

    def clean_name(self) -> str:
        try:
            return validate_display_name(self.cleaned_data["name"])
        except InvalidValue as exc:
            raise forms.ValidationError(exc.message) from None

    def clean(self):
        cleaned = super().clean()
        owner = cleaned.get("owner_group") or getattr(self.instance, "owner_group", None)
        problem = authz.assignee_problem(cleaned.get("assigned_to"), owner.path) if owner is not None else ""
        if problem:
            self.add_error("assigned_to", problem)
        kind = cleaned.get("kind") or self.instance.kind
        if cleaned.get("data_disk_mb") and (kind != InstanceKindChoices.RVD or not cleaned.get("assigned_to")):
            self.add_error("data_disk_mb", "a data disk goes with a remote desktop assigned to someone: choose whose "
                                           "desktop it is, or leave it 0")
        return cleaned


class InstanceChangeForm(InstanceForm):
    """What may change on an instance that is not running; kind, image and owner-group stay as defined."""

    class Meta(InstanceForm.Meta):
        fields = ("name", "vm_type", "persistent", "services", "pinned_node", "assigned_to", "data_disk_mb",
                  "monitoring", "restart_when_dead")


class BuildStartForm(forms.Form):
    """The image wizard's first question: modify this image, or create a new one from it."""

    mode = forms.ChoiceField(choices=(("modify", "Modify this image (a new version of it)"),
                                      ("create", "Create a new image from it")), widget=forms.RadioSelect,
                             initial="modify")
    new_name = forms.CharField(required=False, max_length=100, help_text="the new image's name (create only)")
    vm_type = forms.ModelChoiceField(queryset=VMType.objects.all(), to_field_name="name", empty_label=None)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("mode") == "create":
            try:
                cleaned["new_name"] = validate_display_name(cleaned.get("new_name", ""), "new_name")
            except InvalidValue as exc:
                self.add_error("new_name", exc.message)
        else:
            cleaned["new_name"] = ""
        return cleaned


def _network_field(name: str) -> forms.Field:
    """A form field for one network setting, labelled and explained as the model does. Every field is plain text
    (or a plain select): the values are checked as a whole by ``validate_network``, so each message is the same
    one the API gives."""
    model_field = ClusterNetwork._meta.get_field(name)
    widget = forms.Select(choices=[("", "---------"), *model_field.choices]) if model_field.choices else None
    return forms.CharField(required=False, label=capfirst(model_field.verbose_name), help_text=model_field.help_text,
                           widget=widget)


class ClusterNetworkForm(forms.Form):
    """A cluster's network settings; on a change the cluster is fixed. ``values`` holds the checked settings
    (ready for ``save_network``) once the form is valid."""

    fieldsets = (
        ("Cluster", ("cluster", "kind", "mode")),
        ("Cluster controller", ("cc_eip", "cc_public_interface", "cc_internal_ip", "cc_private_interface")),
        ("Cluster LAN", ("lan_subnet", "lan_gateway", "node_bridge", "dhcp_start", "dhcp_end")),
        ("Public addresses and ports", ("eip_start", "eip_end", "port_low", "port_high")),
    )

    def __init__(self, *args, instance: ClusterNetwork | None = None, **kwargs) -> None:
        self.instance = instance
        if instance is not None:
            stored = {field: "" if value is None else value for field, value in network_settings(instance).items()}
            kwargs["initial"] = stored | (kwargs.get("initial") or {})
        super().__init__(*args, **kwargs)
        for name in NETWORK_FIELDS:
            self.fields[name] = _network_field(name)
        if instance is not None:
            self.fields["cluster"].disabled = True
        self.values: dict = {}

    def groups(self) -> list[tuple[str, list]]:
        """The fields in their fieldsets, for the template."""
        return [(title, [self[name] for name in names]) for title, names in self.fieldsets]

    def clean(self):
        cleaned = super().clean()
        fields = {name: cleaned.get(name, "") for name in NETWORK_FIELDS}
        if self.instance is not None:
            fields["cluster"] = self.instance.cluster
        try:
            self.values = validate_network(fields, instance=self.instance)
        except NetworkInvalid as exc:
            self.add_problems(exc)
        return cleaned

    def add_problems(self, exc: NetworkInvalid) -> None:
        """Show each problem next to its field."""
        for problem in exc.problems:
            self.add_error(problem.field if problem.field in self.fields else None, problem.message)
