"""Who may call each URL of the cloud: one entry per URL name of the URLconf (``tests/integration/
test_authorization_urls.py`` fails while a URL has none), each saying which requests to try on a world of records
and what each person must get back (the rule in ``tests.authz_rule``), and which hosts' roles its signed calls take.

A probe turns a world and a person (None: nobody logged in) into calls, each with the answer the rule expects: 200
("not refused": anything but 401, 403, 404 and a redirect to the login page), or the refusal (403, 404; 401 for
nobody logged in). ``signed`` is the set of roles whose signed calls the URL takes (``pc``: a classroom PC)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING

from luhyadb.models import Account, DesktopPool, Host, Image, Instance, Lesson, TaskTransaction, Volume
from tests.authz_rule import ROOT, Person, expected, manages, rule, type_rule

if TYPE_CHECKING:
    from tests.integration.authz_world import World

ANON = 401
# Let in, whether or not the record exists (a call by id on a store this world put nothing in): not 401 or 403.
LET_IN = 0
_SERIAL = itertools.count()


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    expect: int
    body: dict | None = None
    page: bool = False
    rows: tuple[str, set[str]] | None = None  # an API list: the key of each row and exactly the rows expected


Probe = Callable[["World", Person | None], Iterable[Call]]


@dataclass(frozen=True)
class Expect:
    probe: Probe
    signed: frozenset[str] = field(default_factory=frozenset)
    # A call that a signed host may make to check its role (method, path, body): the signed-callers test uses it.
    signed_call: Callable[[World], tuple[str, str, dict | None]] | None = None


def _who(person: Person | None, allowed: bool, refusal: int = 403) -> int:
    if person is None:
        return ANON
    return 200 if allowed else refusal


def _anyone_logged_in(person: Person | None) -> int:
    return _who(person, True)


# Probe builders -----------------------------------------------------------------------------------------------------

def public(method: str, path: str, body: dict | None = None) -> Probe:
    return lambda world, person: [Call(method, path, 200, body)]


def everyone_404(method: str, path: str) -> Probe:
    """Served only where a setting turns it on (the kiosk, on a classroom PC): a 404 for everybody here."""
    return lambda world, person: [Call(method, path, 404)]


def people_only_signed(method: str, path: str, body: dict | None = None) -> Probe:
    """A call for hosts of the cloud only: every person is refused (403), nobody logged in 401."""
    return lambda world, person: [Call(method, path, _who(person, False), body)]


def staff_or_signed(method: str, path: str, body: dict | None = None) -> Probe:
    """Walrus: hosts of the cloud, and the Django administrator (the first administrator, a superuser); every
    other person is refused (403)."""
    return lambda world, person: [Call(method, path, LET_IN if person is not None and person.superuser
                                       else _who(person, False), body)]


def logged_in(method: str, path: str, page: bool = False) -> Probe:
    return lambda world, person: [Call(method, path, _anyone_logged_in(person), page=page)]


def of_type(kind: str, action: str, method: str, path: str, body: dict | None = None, page: bool = False) -> Probe:
    """A call on the type as a whole (a list, a new-record form)."""
    return lambda world, person: [Call(method, path, _who(person, person is not None and type_rule(
        person, action, kind)), body, page)]


def listing(kind: str, path: str, key: str, records: Callable[[World], list],
            key_of: Callable | None = None) -> Probe:
    """An API list: refused (403) unless the person may read the type; else exactly the rows they may read (each
    row's ``key``: the record's attribute of that name, or ``key_of(record)``)."""

    def probe(world, person):
        if person is None or not type_rule(person, "read", kind):
            return [Call("GET", path, _who(person, False))]
        shown = {str(key_of(record) if key_of else getattr(record, key)) for record in records(world)
                 if rule(person, "read", kind, *world.owner(record))}
        return [Call("GET", path, 200, rows=(key, shown))]

    return probe


def creating(kind: str, path: str, body: Callable[[str], dict]) -> Probe:
    """A record made in every owner-group of the world: the rule's create there."""

    def probe(world, person):
        for owner in world.paths:
            allowed = person is not None and rule(person, "create", kind, owner)
            yield Call("POST", path, _who(person, allowed), body(owner))

    return probe


def both(*probes: Probe) -> Probe:
    return lambda world, person: [call for probe in probes for call in probe(world, person)]


def on_records(kind: str, action: str, method: str, path: Callable, records: Callable[[World], list],
               body: dict | Callable | None = None, page: bool = False, extra: Callable | None = None,
               skip_own: bool = False) -> Probe:
    """A call on each record (``body`` may be made from the record): the rule on it; ``extra(world, person,
    record)`` may narrow an allowed call to a refusal (the roles' order on accounts, the image wizard's right)."""

    def probe(world, person):
        for record in records(world):
            if skip_own and person is not None and record.user.username == person.username:
                continue
            if not type(record).objects.filter(pk=record.pk).exists():
                continue  # removed by an earlier call
            owner, assignee = world.owner(record)
            status = ANON if person is None else expected(person, action, kind, owner, assignee)
            if status == 200 and extra is not None:
                status = extra(world, person, record)
            yield Call(method, path(record), status, body(record) if callable(body) else body, page)

    return probe


def status_of(world, person) -> list[Call]:
    allowed = person is not None and (type_rule(person, "read", "server") or type_rule(person, "read", "host"))
    return [Call("GET", "/clc/api/1.0/status/", _who(person, allowed))]


def builds(create: bool) -> Callable:
    """The image wizard needs write on the image (modify), or read on it and create in its owner-group (create)."""

    def extra(world, person, record):
        image = world.build_image(record)
        owner = image.owner_group.path
        may = rule(person, "read", "image", owner) and rule(person, "create", "image", owner) if create else rule(
            person, "write", "image", owner)
        return 200 if may else 403

    return extra


def image_build(world, person, image):
    return 200 if rule(person, "write", "image", image.owner_group.path) else 403


def account_reach(world, person, account):
    return 200 if manages(person, world.person_of(account)) else 403


def account_delete(world, person, account):
    target = world.person_of(account)
    return 200 if manages(person, target) and target.username != person.username else 403


def create_group(world, person) -> Iterable[Call]:
    for path in world.paths:
        new = f"{path}.n{world.serial()}"
        yield Call("POST", "/clc/api/1.0/ownergroups/", _who(person, person is not None and rule(
            person, "create", "ownergroup", new)), {"path": new, "name": "New group"})
    # Upper case is no owner-group path (databases compare case-insensitively): a 400 for who may create groups.
    upper = f"{ROOT}.Upper{world.serial()}"
    if person is not None and type_rule(person, "create", "ownergroup"):
        yield Call("POST", "/clc/api/1.0/ownergroups/", 200, {"path": upper, "name": "Upper"})
    else:
        yield Call("POST", "/clc/api/1.0/ownergroups/", _who(person, False), {"path": upper, "name": "Upper"})


def key_rows(world, person) -> list[Call]:
    """Hosts' keys: everyone logged in lists those they may manage (servers': the root's super administrators;
    PCs': who may create PCs where the PC is)."""
    if person is None:
        return [Call("GET", "/clc/api/1.0/hostkeys/", ANON)]
    return [Call("GET", "/clc/api/1.0/hostkeys/", 200, rows=("name", {
        credential.name for credential in world.credentials() if world.manages_key(person, credential)}))]


def key_action(action: str) -> Probe:
    def probe(world, person):
        for credential in world.credentials():
            allowed = person is not None and world.manages_key(person, credential)
            yield Call("POST", f"/clc/api/1.0/hostkeys/{credential.name}/{action}/", _who(person, allowed, 404),
                       {"fingerprint": credential.fingerprint})

    return probe


def key_detail(world, person):
    for credential in world.credentials():
        allowed = person is not None and world.manages_key(person, credential)
        yield Call("GET", f"/clc/api/1.0/hostkeys/{credential.name}/", _who(person, allowed, 404))


def tokens(world, person) -> Iterable[Call]:
    if person is None:
        yield Call("GET", "/clc/api/1.0/jointokens/", ANON)
        return
    yield Call("GET", "/clc/api/1.0/jointokens/", 200, rows=("id", {
        str(token.pk) for token in world.tokens() if world.sees_token(person, token)}))
    for path in world.paths:
        yield Call("POST", "/clc/api/1.0/jointokens/", 200 if rule(person, "create", "host", path) else 403,
                   {"kind": "pc", "cluster": "cluster1", "owner_group": path})
    yield Call("POST", "/clc/api/1.0/jointokens/", 200 if type_rule(person, "create", "server") else 403,
               {"kind": "server", "cluster": "cluster1", "roles": ["nc"]})


def token_withdraw(world, person) -> Iterable[Call]:
    for token in world.tokens():
        allowed = person is not None and world.sees_token(person, token)
        yield Call("DELETE", f"/clc/api/1.0/jointokens/{token.pk}/", _who(person, allowed, 404))


# The records of a kind a call is tried on.
_images = attrgetter("images")
_instances = attrgetter("instances")
_hosts = attrgetter("hosts")
_tasks = attrgetter("tasks")
_builds = attrgetter("builds")
_accounts = attrgetter("accounts")
_groups = attrgetter("groups")
_vmtypes = attrgetter("vmtypes")
_networks = attrgetter("networks")
_servers = attrgetter("servers")
_pools = attrgetter("pools")
_lessons = attrgetter("lessons")
_volumes = attrgetter("volumes")
_snapshots = attrgetter("snapshots")


def _volume_instance(volume: Volume) -> Instance | None:
    """The instance an attach of the volume names: one of the volume's owner-group, if there is one."""
    return (Instance.objects.filter(owner_group_id=volume.owner_group_id)
            .select_related("owner_group", "assigned_to").order_by("instance_id").first())


def _attach_body(volume: Volume) -> dict:
    instance = _volume_instance(volume)
    return {"instance_id": instance.instance_id if instance is not None else "ins-00000000"}


def _uses_volume_instance(world: World, person: Person, volume: Volume) -> int:
    """Attaching also needs execute or write on the instance: a 403 for one the person may read only."""
    instance = _volume_instance(volume)
    if instance is None:
        return 200
    owner, assignee = world.owner(instance)
    if any(rule(person, action, "instance", owner, assignee) for action in ("execute", "write")):
        return 200
    return 403 if rule(person, "read", "instance", owner, assignee) else 200


def _desktops(world):
    return [instance for instance in world.instances if instance.kind == "rvd"]


API = "/clc/api/1.0"


def teaching(person: Person | None, path: str) -> int:
    """The class console of the owner-group at ``path``: for who may change instances there; 403 for who may change
    instances nowhere, 404 for who may elsewhere but not there (another school's class does not exist for them)."""
    if person is None:
        return ANON
    if not type_rule(person, "write", "instance"):
        return 403
    return 200 if rule(person, "write", "instance", path) else 404


def class_pages(suffix: str, method: str = "GET", body: dict | None = None) -> Probe:
    return lambda world, person: [Call(method, f"/clc/class/{path}/{suffix}", teaching(person, path), body, page=True)
                                  for path in world.paths]


def class_desktop_pages(suffix: str, method: str = "GET") -> Probe:
    """A page of one desktop of a class (its screen, watching it): the class console's rule, and the desktop must be
    one the person may read (else it is not found)."""
    def status(person, path: str) -> int:
        found = teaching(person, path)
        return 404 if found == 200 and not rule(person, "read", "instance", path) else found

    return lambda world, person: [Call(method, f"/clc/class/{desktop.owner_group.path}/{suffix.format(desktop)}",
                                       status(person, desktop.owner_group.path), page=True)
                                  for desktop in _desktops(world)]


def _p(template: str) -> Callable:
    return lambda record: template.format(record)


def _app(template: str) -> Callable:
    """A path of a record (a desktop or a pool) and the published app of its image (``{1}``: the app's id)."""
    return lambda record: template.format(record, record.image.apps.get().pk)


def key_pages(person: Person | None) -> int:
    """The console's pages of keys and join tokens: for who manages some hosts' keys."""
    return _who(person, person is not None and (type_rule(person, "create", "server")
                                                or type_rule(person, "create", "host")))


def key_page_action(action: str) -> Probe:
    def probe(world, person):
        for credential in world.credentials():
            status = key_pages(person)
            if status == 200 and not world.manages_key(person, credential):
                status = 404
            yield Call("POST", f"/clc/hosts/keys/{credential.name}/{action}/", status, page=True)

    return probe


def token_page_withdraw(world, person) -> Iterable[Call]:
    for token in world.tokens():
        status = key_pages(person)
        if status == 200 and not world.sees_token(person, token):
            status = 404
        yield Call("POST", f"/clc/hosts/tokens/{token.pk}/withdraw/", status, page=True)


def documents(role: str) -> dict[str, Expect]:
    """A role's API document and its docs page: for hosts of the cloud (signed) and anyone logged in."""
    return {f"{role}-api-{page}": Expect(logged_in("GET", f"/{role}/api/1.0/{page}/"), ALL_HOSTS)
            for page in ("schema", "docs")}


# The table ----------------------------------------------------------------------------------------------------------

CLC = frozenset({"clc"})
NODES = frozenset({"nc", "pc"})
ALL_HOSTS = frozenset({"clc", "walrus", "cc", "nc", "sc", "watch", "pc"})

EXPECTATIONS: dict[str, Expect] = {
    # The CLC's API.
    "clc-api:ping": Expect(public("GET", f"{API}/ping/")),
    "clc-api:status": Expect(status_of),
    "clc-api:register-server": Expect(people_only_signed("POST", f"{API}/register/server/", {}),
                                      frozenset({"clc", "walrus", "cc", "watch"}),
                                      lambda world: ("POST", f"{API}/register/server/", {})),
    "clc-api:register-host": Expect(people_only_signed("POST", f"{API}/register/host/", {}), frozenset({"cc"}),
                                    lambda world: ("POST", f"{API}/register/host/", {})),
    "clc-api:enrolments": Expect(public("POST", f"{API}/enrolments/", {}), frozenset({"cc"}),
                                 lambda world: ("POST", f"{API}/enrolments/", {})),
    "clc-api:peer": Expect(people_only_signed("GET", f"{API}/peers/nobody-here/"),
                           frozenset({"walrus", "cc", "nc", "sc", "watch"}),
                           lambda world: ("GET", f"{API}/peers/nobody-here/", None)),
    # A WebDAV login, checked for the storage controller that received it (clc.services.shares).
    "clc-api:dav-authorize": Expect(people_only_signed("POST", f"{API}/dav/authorize/", {}), frozenset({"sc"}),
                                    lambda world: ("POST", f"{API}/dav/authorize/", {})),
    "clc-api:node-commands": Expect(on_records("server", "execute", "POST", _p(API + "/nodes/{0.name}/commands/"),
                                               _servers, {"op": "status/report"})),
    "clc-api:task": Expect(on_records("task", "read", "GET", _p(API + "/tasks/{0.tid}/"), _tasks)),
    "clc-api:task-list": Expect(listing("task", f"{API}/tasks/?limit=500", "tid",
                                        lambda world: list(TaskTransaction.objects.all()))),
    "clc-api:builds": Expect(on_records("image", "read", "POST", lambda image: f"{API}/builds/", _images,
                                        lambda image: {"image": image.image_id, "vm_type": "tiny"},
                                        extra=image_build)),
    "clc-api:build": Expect(on_records("task", "read", "GET", _p(API + "/builds/{0.tid}/"), _builds)),
    "clc-api:build-step": Expect(on_records("task", "read", "POST", _p(API + "/builds/{0.tid}/stop/"), _builds,
                                            extra=builds(create=False))),
    "clc-api:server-list": Expect(of_type("server", "read", "GET", f"{API}/servers/")),
    "clc-api:server-detail": Expect(on_records("server", "read", "GET", _p(API + "/servers/{0.role}/{0.name}/"),
                                               _servers)),
    "clc-api:server-wake": Expect(on_records("server", "execute", "POST", _p(API + "/servers/{0.role}/{0.name}/wake/"),
                                             _servers)),
    "clc-api:server-poweroff": Expect(on_records("server", "execute", "POST",
                                                 _p(API + "/servers/{0.role}/{0.name}/poweroff/"), _servers)),
    "clc-api:server-refresh": Expect(on_records("server", "execute", "POST",
                                                _p(API + "/servers/{0.role}/{0.name}/refresh/"), _servers)),
    "clc-api:server-drain": Expect(on_records("server", "execute", "POST",
                                              _p(API + "/servers/{0.role}/{0.name}/drain/"), _servers,
                                              {"draining": False})),
    "clc-api:cluster-usage": Expect(of_type("network", "read", "GET", f"{API}/clusters/cluster1/usage/")),
    "clc-api:health": Expect(of_type("server", "read", "GET", f"{API}/health/")),
    "clc-api:image-list": Expect(both(
        listing("image", f"{API}/images/?limit=500", "image_id",
                lambda world: list(Image.objects.select_related("owner_group"))),
        creating("image", f"{API}/images/", lambda owner: {"name": "made here", "owner_group": owner}))),
    "clc-api:image-detail": Expect(on_records("image", "read", "GET", _p(API + "/images/{0.image_id}/"), _images)),
    "clc-api:image-start-upload": Expect(on_records("image", "write", "POST", _p(API + "/images/{0.image_id}/uploads/"),
                                                    _images, {"size": 10})),
    "clc-api:image-complete-upload": Expect(on_records(
        "image", "write", "POST", _p(API + "/images/{0.image_id}/uploads/upl-0000abcd/complete/"), _images)),
    "clc-api:image-prepare": Expect(on_records("image", "execute", "POST", _p(API + "/images/{0.image_id}/prepare/"),
                                               _images, {"node": "nc-secret-node"})),
    "clc-api:pool-list": Expect(listing("pool", f"{API}/pools/?limit=500", "pool_id",
                                        lambda world: list(DesktopPool.objects.select_related("owner_group")))),
    "clc-api:pool-detail": Expect(on_records("pool", "read", "GET", _p(API + "/pools/{0.pool_id}/"), _pools)),
    "clc-api:pool-desktops": Expect(on_records("pool", "read", "GET", _p(API + "/pools/{0.pool_id}/desktops/"),
                                               _pools)),
    # Allowed, a claim gets the person a desktop; with no cluster in this world its run is then refused (503).
    "clc-api:pool-claim": Expect(on_records("pool", "execute", "POST", _p(API + "/pools/{0.pool_id}/claim/"),
                                            _pools)),
    "clc-api:lesson-list": Expect(listing("pool", f"{API}/lessons/?limit=500", "lesson_id",
                                          lambda world: list(Lesson.objects.select_related("pool__owner_group")))),
    "clc-api:lesson-detail": Expect(on_records("pool", "read", "GET", _p(API + "/lessons/{0.lesson_id}/"),
                                               _lessons)),
    # Allowed, a volume is asked of the cluster's SC: none runs in this world (400 naming the cluster, 503).
    "clc-api:volume-list": Expect(both(
        listing("volume", f"{API}/volumes/?limit=500", "volume_id",
                lambda world: list(Volume.objects.select_related("owner_group"))),
        creating("volume", f"{API}/volumes/", lambda owner: {"name": "made here", "owner_group": owner,
                                                             "size": 2**20}))),
    "clc-api:volume-detail": Expect(both(
        on_records("volume", "read", "GET", _p(API + "/volumes/{0.volume_id}/"), _volumes),
        on_records("volume", "write", "PATCH", _p(API + "/volumes/{0.volume_id}/"), _volumes, {"name": "renamed"}))),
    "clc-api:volume-snapshots": Expect(both(
        on_records("volume", "read", "GET", _p(API + "/volumes/{0.volume_id}/snapshots/"), _volumes),
        on_records("volume", "write", "POST", _p(API + "/volumes/{0.volume_id}/snapshots/"), _volumes))),
    "clc-api:volume-restore": Expect(on_records("volume", "write", "POST", _p(API + "/volumes/{0.volume_id}/restore/"),
                                                _volumes, {"snapshot_id": "snp-00000000"})),
    # Attaching is writing the volume and using (execute or write) the instance: one the person may not read is a
    # 400 naming instance_id as an unknown one (not a refusal here), one they may only read a 403. Allowed, this
    # world's instances do not run: a 409 naming instance_id.
    "clc-api:volume-attach": Expect(on_records("volume", "write", "POST", _p(API + "/volumes/{0.volume_id}/attach/"),
                                               _volumes, _attach_body, extra=_uses_volume_instance)),
    # Allowed, nothing is attached in this world: a 409.
    "clc-api:volume-detach": Expect(on_records("volume", "write", "POST", _p(API + "/volumes/{0.volume_id}/detach/"),
                                               _volumes)),
    "clc-api:snapshot-detail": Expect(on_records("volume", "read", "GET", _p(API + "/snapshots/{0.snapshot_id}/"),
                                                 _snapshots)),
    "clc-api:instance-list": Expect(listing(
        "instance", f"{API}/instances/?limit=500", "instance_id",
        lambda world: list(Instance.objects.select_related("owner_group", "assigned_to")))),
    "clc-api:instance-detail": Expect(on_records("instance", "read", "GET", _p(API + "/instances/{0.instance_id}/"),
                                                 _instances)),
    "clc-api:instance-console": Expect(on_records("instance", "execute", "GET",
                                                  _p(API + "/instances/{0.instance_id}/console/"), _instances)),
    "clc-api:instance-push": Expect(on_records("instance", "execute", "POST",
                                               _p(API + "/instances/{0.instance_id}/push/"), _instances,
                                               {"hosts": []})),
    "clc-api:instance-run": Expect(on_records("instance", "execute", "POST",
                                              _p(API + "/instances/{0.instance_id}/run/"), _instances)),
    "clc-api:instance-stop": Expect(on_records("instance", "execute", "POST",
                                               _p(API + "/instances/{0.instance_id}/stop/"), _instances)),
    "clc-api:vmtype-list": Expect(of_type("vmtype", "read", "GET", f"{API}/vmtypes/")),
    "clc-api:vmtype-detail": Expect(on_records("vmtype", "write", "PATCH", _p(API + "/vmtypes/{0.name}/"), _vmtypes,
                                               {"cpus": 1})),
    "clc-api:host-list": Expect(both(
        listing("host", f"{API}/hosts/?limit=500", "mac", lambda world: list(Host.objects.select_related(
            "owner_group"))),
        creating("host", f"{API}/hosts/", lambda owner: {
            "name": "pc-made", "mac": f"52:54:00:0f:{abs(hash(owner)) % 256:02x}:{next(_SERIAL) % 256:02x}",
            "ip": "10.0.15.15", "cluster": "cluster1", "owner_group": owner}))),
    "clc-api:host-detail": Expect(on_records("host", "read", "GET", _p(API + "/hosts/{0.mac}/"), _hosts)),
    "clc-api:host-desktops": Expect(
        lambda world, person: [Call("GET", f"{API}/hosts/{host.mac}/desktops/", _who(person, False))
                               for host in world.hosts],
        frozenset({"cc"}), lambda world: ("GET", f"{API}/hosts/52:54:00:00:09:99/desktops/", None)),
    "clc-api:host-wake": Expect(on_records("host", "execute", "POST", _p(API + "/hosts/{0.mac}/wake/"), _hosts)),
    "clc-api:host-refresh": Expect(on_records("host", "execute", "POST", _p(API + "/hosts/{0.mac}/refresh/"), _hosts)),
    "clc-api:host-poweroff": Expect(on_records("host", "execute", "POST", _p(API + "/hosts/{0.mac}/poweroff/"),
                                               _hosts)),
    "clc-api:network-list": Expect(of_type("network", "read", "GET", f"{API}/networks/")),
    "clc-api:network-detail": Expect(on_records("network", "read", "GET", _p(API + "/networks/{0.cluster}/"),
                                                _networks)),
    "clc-api:network-cc-config": Expect(on_records("network", "read", "GET",
                                                   _p(API + "/networks/{0.cluster}/cc-config/"), _networks),
                                        frozenset({"cc"}),
                                        lambda world: ("GET", f"{API}/networks/cluster1/cc-config/", None)),
    "clc-api:account-list": Expect(listing("account", f"{API}/accounts/?limit=500", "username",
                                           lambda world: list(Account.objects.select_related("user", "owner_group")),
                                           lambda account: account.user.username)),
    "clc-api:account-detail": Expect(on_records("account", "write", "PATCH", _p(API + "/accounts/{0.user.username}/"),
                                                _accounts, {"first_name": "Checked"}, extra=account_reach)),
    # Not one's own: a new password ends one's own session (that is My account's job).
    "clc-api:account-password": Expect(on_records("account", "write", "POST",
                                                  _p(API + "/accounts/{0.user.username}/password/"), _accounts,
                                                  {"password": ""}, extra=account_reach, skip_own=True)),
    "clc-api:ownergroup-list": Expect(create_group),
    "clc-api:ownergroup-detail": Expect(on_records("ownergroup", "read", "GET", _p(API + "/ownergroups/{0.path}/"),
                                                   _groups)),
    "clc-api:hostkey-list": Expect(key_rows),
    "clc-api:hostkey-detail": Expect(key_detail),
    "clc-api:hostkey-approve": Expect(key_action("approve")),
    "clc-api:hostkey-revoke": Expect(key_action("revoke")),
    "clc-api:jointoken-list": Expect(tokens),
    "clc-api:jointoken-detail": Expect(token_withdraw),
    # Walrus: the CLC and the CCs (signed), the Django administrator (a superuser) and a browser's upload token.
    "walrus-api:ping": Expect(public("GET", "/walrus/api/1.0/ping/")),
    "walrus-api:status-report": Expect(people_only_signed("POST", "/walrus/api/1.0/status/report/", {}), CLC,
                                       lambda world: ("POST", "/walrus/api/1.0/status/report/", {})),
    "walrus-api:upload-list": Expect(staff_or_signed("POST", "/walrus/api/1.0/uploads/", {}), CLC | {"cc"},
                                     lambda world: ("POST", "/walrus/api/1.0/uploads/", {})),
    "walrus-api:upload-data": Expect(staff_or_signed("PUT", "/walrus/api/1.0/uploads/upl-0000abcd/data"),
                                     CLC | {"cc"}),
    "walrus-api:upload-complete": Expect(staff_or_signed("POST", "/walrus/api/1.0/uploads/upl-0000abcd/complete/",
                                                            {}), CLC | {"cc"}),
    "walrus-api:upload-detail": Expect(staff_or_signed("GET", "/walrus/api/1.0/uploads/upl-0000abcd/"),
                                       CLC | {"cc"}),
    "walrus-api:image-list": Expect(staff_or_signed("GET", "/walrus/api/1.0/images/"), CLC | {"cc"},
                                    lambda world: ("GET", "/walrus/api/1.0/images/", None)),
    "walrus-api:version-data": Expect(staff_or_signed("GET", "/walrus/api/1.0/images/img-0000abcd/versions/1/data"),
                                      CLC | {"cc", "sc"}),
    "walrus-api:version-detail": Expect(staff_or_signed("GET", "/walrus/api/1.0/images/img-0000abcd/versions/1/"),
                                        CLC | {"cc"}),
    "walrus-api:image-detail": Expect(staff_or_signed("GET", "/walrus/api/1.0/images/img-0000abcd/"),
                                      CLC | {"cc"}),
    # A CC's API: hosts of the cloud only.
    "cc-api:ping": Expect(public("GET", "/cc/api/1.0/ping/")),
    "cc-api:enrolments": Expect(public("POST", "/cc/api/1.0/enrolments/", {})),
    "cc-api:peer": Expect(people_only_signed("GET", "/cc/api/1.0/peers/nobody-here/"), frozenset({"nc", "sc", "pc"}),
                          lambda world: ("GET", "/cc/api/1.0/peers/nobody-here/", None)),
    "cc-api:register-server": Expect(people_only_signed("POST", "/cc/api/1.0/register/server/", {}),
                                     frozenset({"nc", "sc", "pc"}),
                                     lambda world: ("POST", "/cc/api/1.0/register/server/", {})),
    "cc-api:register-host": Expect(people_only_signed("POST", "/cc/api/1.0/register/host/", {}), frozenset({"pc"}),
                                   lambda world: ("POST", "/cc/api/1.0/register/host/", {})),
    "cc-api:node-commands": Expect(people_only_signed("POST", "/cc/api/1.0/nodes/nc-secret-node/commands/", {}), CLC,
                                   lambda world: ("POST", "/cc/api/1.0/nodes/nc-secret-node/commands/", {})),
    "cc-api:status-report": Expect(people_only_signed("POST", "/cc/api/1.0/status/report/", {}), CLC,
                                   lambda world: ("POST", "/cc/api/1.0/status/report/", {})),
    "cc-api:node-drain": Expect(people_only_signed("POST", "/cc/api/1.0/nodes/nc-secret-node/drain/", {}), CLC,
                                lambda world: ("POST", "/cc/api/1.0/nodes/nc-secret-node/drain/", {})),
    "cc-api:node": Expect(people_only_signed("DELETE", "/cc/api/1.0/nodes/nc-secret-node/"), CLC,
                          lambda world: ("DELETE", "/cc/api/1.0/nodes/nc-secret-node/", None)),
    "cc-api:usage": Expect(people_only_signed("GET", "/cc/api/1.0/usage/"), CLC,
                           lambda world: ("GET", "/cc/api/1.0/usage/", None)),
    "cc-api:tasks": Expect(people_only_signed("GET", "/cc/api/1.0/tasks/"), CLC,
                           lambda world: ("GET", "/cc/api/1.0/tasks/", None)),
    "cc-api:task": Expect(people_only_signed("GET", "/cc/api/1.0/tasks/5f0c6d2a9e3b4f1c8a7d6e5f4c3b2a19/"), CLC,
                          lambda world: ("GET", "/cc/api/1.0/tasks/5f0c6d2a9e3b4f1c8a7d6e5f4c3b2a19/", None)),
    "cc-api:workers": Expect(people_only_signed("GET", "/cc/api/1.0/workers/"), CLC,
                             lambda world: ("GET", "/cc/api/1.0/workers/", None)),
    "cc-api:hosts-wake": Expect(people_only_signed("POST", "/cc/api/1.0/hosts/wake/", {}), CLC,
                                lambda world: ("POST", "/cc/api/1.0/hosts/wake/", {})),
    "cc-api:host-desktops": Expect(people_only_signed("GET", "/cc/api/1.0/hosts/52:54:00:00:09:99/desktops/"),
                                   frozenset({"pc"})),
    "cc-api:instances": Expect(people_only_signed("GET", "/cc/api/1.0/instances/"), CLC,
                               lambda world: ("GET", "/cc/api/1.0/instances/", None)),
    "cc-api:instance-stop": Expect(people_only_signed("POST", "/cc/api/1.0/instances/ins-0000abcd/stop/", {}), CLC,
                                   lambda world: ("POST", "/cc/api/1.0/instances/ins-0000abcd/stop/", {})),
    "cc-api:instance-submit": Expect(people_only_signed("POST", "/cc/api/1.0/instances/ins-0000abcd/submit/", {}), CLC,
                                     lambda world: ("POST", "/cc/api/1.0/instances/ins-0000abcd/submit/", {})),
    "cc-api:instance-volumes": Expect(people_only_signed("POST", "/cc/api/1.0/instances/ins-0000abcd/volumes/", {}),
                                      CLC, lambda world: ("POST", "/cc/api/1.0/instances/ins-0000abcd/volumes/", {})),
    "cc-api:instance-volume-detach": Expect(
        people_only_signed("POST", "/cc/api/1.0/instances/ins-0000abcd/volumes/vol-0000abcd/detach/", {}), CLC,
        lambda world: ("POST", "/cc/api/1.0/instances/ins-0000abcd/volumes/vol-0000abcd/detach/", {})),
    "cc-api:instance": Expect(people_only_signed("DELETE", "/cc/api/1.0/instances/ins-0000abcd/", {}), CLC,
                              lambda world: ("DELETE", "/cc/api/1.0/instances/ins-0000abcd/", {})),
    "cc-api:walrus-relay": Expect(people_only_signed("POST", "/cc/api/1.0/relay/walrus/api/1.0/uploads/", {}),
                                  frozenset({"nc"}),
                                  lambda world: ("POST", "/cc/api/1.0/relay/walrus/api/1.0/uploads/x/", {})),
    "cc-api:image-data": Expect(people_only_signed("GET", "/cc/api/1.0/images/img-0000abcd/versions/1/data"),
                                NODES, lambda world: ("GET", "/cc/api/1.0/images/img-0000abcd/versions/0/data", None)),
    # The other roles' APIs and the classroom kiosk (off here: a 404 for everybody, whatever they are).
    "nc-api:ping": Expect(public("GET", "/nc/api/1.0/ping/")),
    "sc-api:ping": Expect(public("GET", "/sc/api/1.0/ping/")),
    "sc-api:status-report": Expect(people_only_signed("POST", "/sc/api/1.0/status/report/", {}), CLC,
                                   lambda world: ("POST", "/sc/api/1.0/status/report/", {})),
    # The SC's volumes: the CLC (signed) and the Django administrator; an export's answer (its CHAP secret) for the
    # signed CLC and CCs only (a CC exports to its instance's node), never a person.
    "sc-api:space": Expect(staff_or_signed("GET", "/sc/api/1.0/space/"), CLC,
                           lambda world: ("GET", "/sc/api/1.0/space/", None)),
    "sc-api:volume-list": Expect(staff_or_signed("POST", "/sc/api/1.0/volumes/", {}), CLC,
                                 lambda world: ("POST", "/sc/api/1.0/volumes/", {})),
    "sc-api:volume-detail": Expect(staff_or_signed("GET", "/sc/api/1.0/volumes/vol-0000abcd/"), CLC,
                                   lambda world: ("GET", "/sc/api/1.0/volumes/vol-0000abcd/", None)),
    "sc-api:volume-export": Expect(people_only_signed("POST", "/sc/api/1.0/volumes/vol-0000abcd/export/", {}),
                                   CLC | {"cc"},
                                   lambda world: ("POST", "/sc/api/1.0/volumes/vol-0000abcd/export/", {})),
    "sc-api:volume-restore": Expect(staff_or_signed("POST", "/sc/api/1.0/volumes/vol-0000abcd/restore/", {}), CLC,
                                    lambda world: ("POST", "/sc/api/1.0/volumes/vol-0000abcd/restore/", {})),
    "sc-api:snapshot-list": Expect(staff_or_signed("POST", "/sc/api/1.0/snapshots/", {}), CLC,
                                   lambda world: ("POST", "/sc/api/1.0/snapshots/", {})),
    "sc-api:snapshot-detail": Expect(staff_or_signed("GET", "/sc/api/1.0/snapshots/snp-0000abcd/"), CLC,
                                     lambda world: ("GET", "/sc/api/1.0/snapshots/snp-0000abcd/", None)),
    # The WebDAV homes' and shares' usage: the CLC (signed) and the Django administrator.
    "sc-api:share-list": Expect(staff_or_signed("GET", "/sc/api/1.0/shares/"), CLC,
                                lambda world: ("GET", "/sc/api/1.0/shares/", None)),
    "watch-api:ping": Expect(public("GET", "/watch/api/1.0/ping/")),
    "watch-api:status-report": Expect(people_only_signed("POST", "/watch/api/1.0/status/report/", {}), CLC,
                                      lambda world: ("POST", "/watch/api/1.0/status/report/", {})),
    "nc:kiosk": Expect(everyone_404("GET", "/nc/kiosk/")),
    "nc:kiosk-desktops": Expect(everyone_404("GET", "/nc/kiosk/desktops/")),
    "nc:kiosk-start": Expect(everyone_404("POST", "/nc/kiosk/desktops/ins-0000abcd/start/")),
    "nc:kiosk-stop": Expect(everyone_404("POST", "/nc/kiosk/desktops/ins-0000abcd/stop/")),
    # The console's pages.
    "clc:status": Expect(logged_in("GET", "/clc/", page=True)),
    "clc:login": Expect(public("GET", "/clc/login/")),
    "favicon": Expect(public("GET", "/favicon.ico")),  # every host's icon, asked for by browsers on every page
    "clc:logout": Expect(public("GET", "/clc/logout/")),
    "clc:my-account": Expect(logged_in("GET", "/clc/password/", page=True)),
    "clc:accounts": Expect(of_type("account", "read", "GET", "/clc/accounts/", page=True)),
    "clc:account-create": Expect(of_type("account", "create", "GET", "/clc/accounts/new/", page=True)),
    "clc:account-edit": Expect(on_records("account", "write", "GET", _p("/clc/accounts/{0.user.username}/edit/"),
                                          _accounts, page=True)),
    "clc:account-password": Expect(on_records("account", "write", "GET",
                                              _p("/clc/accounts/{0.user.username}/password/"), _accounts, page=True)),
    "clc:account-unlock": Expect(on_records("account", "write", "POST", _p("/clc/accounts/{0.user.username}/unlock/"),
                                            _accounts, page=True)),
    "clc:account-delete": Expect(on_records("account", "delete", "GET", _p("/clc/accounts/{0.user.username}/delete/"),
                                            _accounts, page=True)),
    "clc:groups": Expect(of_type("ownergroup", "read", "GET", "/clc/groups/", page=True)),
    "clc:group-create": Expect(of_type("ownergroup", "create", "GET", "/clc/groups/new/", page=True)),
    "clc:group-edit": Expect(on_records("ownergroup", "write", "GET", _p("/clc/groups/{0.path}/edit/"), _groups,
                                        page=True)),
    "clc:group-delete": Expect(on_records("ownergroup", "delete", "GET", _p("/clc/groups/{0.path}/delete/"), _groups,
                                          page=True)),
    "clc:workers": Expect(of_type("server", "read", "GET", "/clc/workers/", page=True)),
    "clc:tasks": Expect(of_type("task", "read", "GET", "/clc/tasks/", page=True)),
    "clc:task": Expect(on_records("task", "read", "GET", _p("/clc/tasks/{0.tid}/"), _tasks, page=True)),
    "clc:vmtypes": Expect(of_type("vmtype", "read", "GET", "/clc/vmtypes/", page=True)),
    "clc:vmtype-create": Expect(of_type("vmtype", "create", "GET", "/clc/vmtypes/new/", page=True)),
    "clc:vmtype-edit": Expect(on_records("vmtype", "write", "GET", _p("/clc/vmtypes/{0.name}/edit/"), _vmtypes,
                                         page=True)),
    "clc:vmtype-delete": Expect(on_records("vmtype", "delete", "GET", _p("/clc/vmtypes/{0.name}/delete/"), _vmtypes,
                                           page=True)),
    "clc:images": Expect(of_type("image", "read", "GET", "/clc/images/", page=True)),
    "clc:image-create": Expect(of_type("image", "create", "GET", "/clc/images/new/", page=True)),
    "clc:image-detail": Expect(on_records("image", "read", "GET", _p("/clc/images/{0.image_id}/"), _images, page=True)),
    "clc:image-edit": Expect(on_records("image", "write", "GET", _p("/clc/images/{0.image_id}/edit/"), _images,
                                        page=True)),
    "clc:build-start": Expect(on_records("image", "read", "GET", _p("/clc/images/{0.image_id}/wizard/"), _images,
                                         page=True)),
    "clc:build": Expect(on_records("task", "read", "GET", _p("/clc/builds/{0.tid}/"), _builds, page=True)),
    "clc:build-step": Expect(on_records("task", "read", "POST", _p("/clc/builds/{0.tid}/stop/"), _builds, page=True,
                                        extra=builds(create=False))),
    "clc:instances": Expect(of_type("instance", "read", "GET", "/clc/instances/", page=True)),
    "clc:instance-create": Expect(of_type("instance", "create", "GET", "/clc/instances/new/", page=True)),
    "clc:instance-detail": Expect(on_records("instance", "read", "GET", _p("/clc/instances/{0.instance_id}/"),
                                             _instances, page=True)),
    "clc:instance-edit": Expect(on_records("instance", "write", "GET", _p("/clc/instances/{0.instance_id}/edit/"),
                                           _instances, page=True)),
    "clc:instance-run": Expect(on_records("instance", "execute", "POST", _p("/clc/instances/{0.instance_id}/run/"),
                                          _instances, page=True)),
    "clc:instance-stop": Expect(on_records("instance", "execute", "POST", _p("/clc/instances/{0.instance_id}/stop/"),
                                           _instances, page=True)),
    "clc:instance-monitoring": Expect(on_records("instance", "write", "POST",
                                                 _p("/clc/instances/{0.instance_id}/monitoring/"), _instances,
                                                 page=True)),
    "clc:instance-push": Expect(on_records("instance", "execute", "GET", _p("/clc/instances/{0.instance_id}/push/"),
                                           _instances, page=True)),
    "clc:pools": Expect(of_type("pool", "read", "GET", "/clc/pools/", page=True)),
    "clc:pool-create": Expect(of_type("pool", "create", "GET", "/clc/pools/new/", page=True)),
    "clc:pool-detail": Expect(on_records("pool", "read", "GET", _p("/clc/pools/{0.pool_id}/"), _pools, page=True)),
    "clc:volumes": Expect(of_type("volume", "read", "GET", "/clc/volumes/", page=True)),
    # The shares' usage: no SC runs in this world, so the page only says so; the rows' rule is clc/tests'.
    "clc:shares": Expect(of_type("share", "read", "GET", "/clc/shares/", page=True)),
    "clc:volume-create": Expect(of_type("volume", "create", "GET", "/clc/volumes/new/", page=True)),
    "clc:volume-detail": Expect(on_records("volume", "read", "GET", _p("/clc/volumes/{0.volume_id}/"), _volumes,
                                           page=True)),
    # Allowed, each change is asked of the volume's SC, which this world does not run: a message on its page.
    "clc:volume-rename": Expect(on_records("volume", "write", "POST", _p("/clc/volumes/{0.volume_id}/rename/"),
                                           _volumes, {"name": "renamed"}, page=True)),
    "clc:volume-snapshot": Expect(on_records("volume", "write", "POST", _p("/clc/volumes/{0.volume_id}/snapshots/"),
                                             _volumes, page=True)),
    # Allowed, the instance is looked for among the running ones the person may use (none here): a message.
    "clc:volume-attach": Expect(on_records("volume", "write", "POST", _p("/clc/volumes/{0.volume_id}/attach/"),
                                           _volumes, _attach_body, page=True)),
    "clc:volume-detach": Expect(on_records("volume", "write", "POST", _p("/clc/volumes/{0.volume_id}/detach/"),
                                           _volumes, page=True)),
    "clc:volume-restore": Expect(on_records(
        "volume", "write", "POST", _p("/clc/volumes/{0.volume.volume_id}/snapshots/{0.snapshot_id}/restore/"),
        _snapshots, page=True)),
    "clc:pool-edit": Expect(on_records("pool", "write", "GET", _p("/clc/pools/{0.pool_id}/edit/"), _pools,
                                       page=True)),
    # Adding a lesson is writing its pool; allowed, this empty form shows the pool's page again with its errors.
    "clc:pool-lesson-add": Expect(on_records("pool", "write", "POST", _p("/clc/pools/{0.pool_id}/lessons/"), _pools,
                                             page=True)),
    "clc:hosts": Expect(of_type("host", "read", "GET", "/clc/hosts/", page=True)),
    "clc:host-create": Expect(of_type("host", "create", "GET", "/clc/hosts/new/", page=True)),
    "clc:servers": Expect(of_type("server", "read", "GET", "/clc/hosts/servers/", page=True)),
    "clc:server-wake": Expect(on_records("server", "execute", "POST", _p("/clc/hosts/servers/{0.role}/{0.name}/wake/"),
                                         _servers, page=True)),
    "clc:server-poweroff": Expect(on_records("server", "execute", "POST",
                                             _p("/clc/hosts/servers/{0.role}/{0.name}/poweroff/"), _servers,
                                             page=True)),
    "clc:server-refresh": Expect(on_records("server", "execute", "POST",
                                            _p("/clc/hosts/servers/{0.role}/{0.name}/refresh/"), _servers, page=True)),
    "clc:server-drain": Expect(on_records("server", "execute", "POST",
                                          _p("/clc/hosts/servers/{0.role}/{0.name}/drain/"), _servers,
                                          {"draining": "0"}, page=True)),
    "clc:host-refresh": Expect(on_records("host", "execute", "POST", _p("/clc/hosts/{0.mac}/refresh/"), _hosts,
                                          page=True)),
    "clc:network-usage": Expect(on_records("network", "read", "GET", _p("/clc/networks/{0.cluster}/usage/"), _networks,
                                           page=True)),
    "clc:host-edit": Expect(on_records("host", "write", "GET", _p("/clc/hosts/{0.mac}/edit/"), _hosts, page=True)),
    "clc:host-wake": Expect(on_records("host", "execute", "POST", _p("/clc/hosts/{0.mac}/wake/"), _hosts, page=True)),
    "clc:host-poweroff": Expect(on_records("host", "execute", "POST", _p("/clc/hosts/{0.mac}/poweroff/"), _hosts,
                                           page=True)),
    "clc:networks": Expect(of_type("network", "read", "GET", "/clc/networks/", page=True)),
    "clc:network-create": Expect(of_type("network", "create", "GET", "/clc/networks/new/", page=True)),
    "clc:network-edit": Expect(on_records("network", "write", "GET", _p("/clc/networks/{0.cluster}/edit/"), _networks,
                                          page=True)),
    "clc:network-delete": Expect(on_records("network", "delete", "GET", _p("/clc/networks/{0.cluster}/delete/"),
                                            _networks, page=True)),
    "clc:keys": Expect(lambda world, person: [Call("GET", "/clc/hosts/keys/", key_pages(person), page=True)]),
    "clc:key-approve": Expect(key_page_action("approve")),
    "clc:key-revoke": Expect(key_page_action("revoke")),
    "clc:tokens": Expect(lambda world, person: [Call("GET", "/clc/hosts/tokens/", key_pages(person), page=True)]),
    "clc:token-create": Expect(lambda world, person: [Call("GET", "/clc/hosts/tokens/new/", key_pages(person),
                                                           page=True)]),
    "clc:classes": Expect(of_type("instance", "write", "GET", "/clc/class/", page=True)),
    "clc:class": Expect(class_pages("")),
    "clc:class-status": Expect(class_pages("status/")),
    "clc:class-act": Expect(class_pages("act/", "POST", {"action": "message", "text": "Time to save your work"})),
    "clc:class-screen": Expect(class_desktop_pages("screens/{0.instance_id}.png")),
    "clc:class-watch": Expect(class_desktop_pages("watch/{0.instance_id}/")),
    "clc:class-watch-status": Expect(class_desktop_pages("watch/{0.instance_id}/status/")),
    "clc:class-watch-token": Expect(class_desktop_pages("watch/{0.instance_id}/token/", "POST")),
    "": Expect(public("GET", "/")),
    # The student portal.
    "portal:desktops": Expect(of_type("instance", "read", "GET", "/portal/", page=True)),
    "portal:status": Expect(of_type("instance", "read", "GET", "/portal/status/", page=True)),
    "portal:desktop": Expect(on_records("instance", "read", "GET", _p("/portal/desktops/{0.instance_id}/"),
                                        _desktops, page=True)),
    "portal:desktop-status": Expect(on_records("instance", "read", "GET",
                                               _p("/portal/desktops/{0.instance_id}/status/"), _desktops, page=True)),
    "portal:start": Expect(on_records("instance", "execute", "POST", _p("/portal/desktops/{0.instance_id}/start/"),
                                      _desktops, page=True)),
    "portal:stop": Expect(on_records("instance", "execute", "POST", _p("/portal/desktops/{0.instance_id}/stop/"),
                                     _desktops, page=True)),
    "portal:token": Expect(on_records("instance", "execute", "POST", _p("/portal/desktops/{0.instance_id}/token/"),
                                      _desktops, page=True)),
    "portal:client-file": Expect(on_records("instance", "execute", "GET",
                                            _p("/portal/desktops/{0.instance_id}/client/"), _desktops, page=True)),
    "portal:rdp-file": Expect(on_records("instance", "execute", "GET", _p("/portal/desktops/{0.instance_id}/rdp/"),
                                         _desktops, page=True)),
    "portal:apps": Expect(of_type("instance", "read", "GET", "/portal/apps/", page=True)),
    # Allowed, opening an app starts the desktop; with no cluster in this world the start is refused (a message).
    "portal:desktop-app-open": Expect(on_records("instance", "execute", "POST",
                                                 _app("/portal/desktops/{0.instance_id}/apps/{1}/open/"), _desktops,
                                                 page=True)),
    "portal:app-file": Expect(on_records("instance", "execute", "GET",
                                         _app("/portal/desktops/{0.instance_id}/apps/{1}/rdp/"), _desktops,
                                         page=True)),
    "portal:pool-app-open": Expect(on_records("pool", "execute", "POST",
                                              _app("/portal/pools/{0.pool_id}/apps/{1}/open/"), _pools, page=True)),
    "portal:novnc": Expect(logged_in("GET", "/portal/novnc/core/rfb.js", page=True)),
    # Allowed, a claim gets the person a desktop; with no cluster in this world its start is refused (a message).
    "portal:pool-claim": Expect(on_records("pool", "execute", "POST", _p("/portal/pools/{0.pool_id}/claim/"), _pools,
                                           page=True)),
    **{name: expectation for role in ("clc", "walrus", "cc", "nc", "sc", "watch")
       for name, expectation in documents(role).items()},
}

# Calls that remove records, made last in a world (a removed record is not tried again).
REMOVALS: dict[str, Expect] = {
    # A lesson is part of its pool's timetable: removing one is writing the pool. Both go before the images.
    "clc-api:lesson-detail": Expect(on_records("pool", "write", "DELETE", _p(API + "/lessons/{0.lesson_id}/"),
                                               _lessons)),
    "clc:pool-lesson-delete": Expect(on_records("pool", "write", "POST",
                                                _p("/clc/pools/{0.pool.pool_id}/lessons/{0.lesson_id}/delete/"),
                                                _lessons, page=True)),
    "clc-api:pool-detail": Expect(on_records("pool", "delete", "DELETE", _p(API + "/pools/{0.pool_id}/"), _pools)),
    # Snapshots before their volumes; with no SC in this world each is refused after the rule let it in (503, 409).
    "clc-api:snapshot-detail": Expect(on_records("volume", "delete", "DELETE",
                                                 _p(API + "/snapshots/{0.snapshot_id}/"), _snapshots)),
    "clc:snapshot-delete": Expect(on_records(
        "volume", "delete", "POST", _p("/clc/volumes/{0.volume.volume_id}/snapshots/{0.snapshot_id}/delete/"),
        _snapshots, page=True)),
    "clc-api:volume-detail": Expect(on_records("volume", "delete", "DELETE", _p(API + "/volumes/{0.volume_id}/"),
                                               _volumes)),
    "clc:volume-delete": Expect(both(
        on_records("volume", "delete", "GET", _p("/clc/volumes/{0.volume_id}/delete/"), _volumes, page=True),
        on_records("volume", "delete", "POST", _p("/clc/volumes/{0.volume_id}/delete/"), _volumes, page=True))),
    # The confirm page, then the delete.
    "clc:pool-delete": Expect(both(
        on_records("pool", "delete", "GET", _p("/clc/pools/{0.pool_id}/delete/"), _pools, page=True),
        on_records("pool", "delete", "POST", _p("/clc/pools/{0.pool_id}/delete/"), _pools, page=True))),
    "clc-api:image-detail": Expect(on_records("image", "delete", "DELETE", _p(API + "/images/{0.image_id}/"),
                                              _images)),
    "clc-api:instance-detail": Expect(on_records("instance", "delete", "DELETE",
                                                 _p(API + "/instances/{0.instance_id}/"), _instances)),
    "clc-api:host-detail": Expect(on_records("host", "delete", "DELETE", _p(API + "/hosts/{0.mac}/"), _hosts)),
    "clc-api:account-detail": Expect(on_records("account", "delete", "DELETE",
                                                _p(API + "/accounts/{0.user.username}/"), _accounts,
                                                extra=account_delete)),
    "clc:image-delete": Expect(on_records("image", "delete", "POST", _p("/clc/images/{0.image_id}/delete/"), _images,
                                          page=True)),
    "clc:instance-delete": Expect(on_records("instance", "delete", "POST",
                                             _p("/clc/instances/{0.instance_id}/delete/"), _instances, page=True)),
    "clc:host-delete": Expect(on_records("host", "delete", "POST", _p("/clc/hosts/{0.mac}/delete/"), _hosts,
                                         page=True)),
    "clc-api:server-detail": Expect(on_records("server", "delete", "DELETE", _p(API + "/servers/{0.role}/{0.name}/"),
                                               _servers)),
    "clc:server-forget": Expect(on_records("server", "delete", "POST",
                                           _p("/clc/hosts/servers/{0.role}/{0.name}/forget/"), _servers, page=True)),
    "clc:token-withdraw": Expect(token_page_withdraw),
}

# Issue 17's URLs (metrics, alarms, notifications), declared in modules of their own with the probes above.
from tests.integration import (  # noqa: E402
    url_expectations_alarms,
    url_expectations_charts,
    url_expectations_metrics,
    url_expectations_notifications,
)

for _part in (url_expectations_metrics, url_expectations_alarms, url_expectations_notifications,
              url_expectations_charts):
    EXPECTATIONS.update(_part.EXPECTATIONS)
