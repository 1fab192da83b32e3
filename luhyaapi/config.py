"""Per-host configuration: one INI file plus ``EDUCLOUD_*`` environment overrides, validated at start.

The file is ``$EDUCLOUD_CONF`` or ``/etc/educloud/educloud.conf``. Each setting is ``section.key`` in the file and
``EDUCLOUD_SECTION_KEY`` in the environment (``EDUCLOUD_ROLES`` is accepted for ``host.roles``). The notes' peer files
``clc.conf`` and ``cc.conf`` (``IP='x.x.x.x'``) in ``host.peer_config_dir`` give the boss addresses when
``cloud.clc_url``/``cloud.cc_url`` are not set. Any missing or wrong setting raises ``ConfigError`` naming it.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from luhyaapi.hostinfo import first_mac
from luhyaapi.validators import InvalidValue, validate_ip, validate_mac, validate_name
from luhyaapi.wol import validate_broadcast, validate_interface

ROLES = ("clc", "walrus", "cc", "nc", "sc", "watch")
DEFAULT_CONF = "/etc/educloud/educloud.conf"
DEFAULT_PEER_DIR = "/storage/config"

# (section, key) -> default; None means required.
SETTINGS: dict[tuple[str, str], str | None] = {
    ("host", "name"): None,
    ("host", "roles"): None,
    ("host", "ip"): "127.0.0.1",
    ("host", "mac"): "",
    ("host", "cluster"): "cluster1",
    ("host", "data_dir"): None,
    ("host", "listen"): "127.0.0.1:8000",
    ("host", "peer_config_dir"): DEFAULT_PEER_DIR,
    ("host", "debug"): "false",
    ("host", "image_cache_gb"): "200",
    ("host", "join_token"): "",
    ("cloud", "clc_url"): "",
    ("cloud", "cc_url"): "",
    ("cloud", "walrus_url"): "",
    ("cloud", "heartbeat_seconds"): "300",
    ("cloud", "missed_heartbeats"): "3",
    ("cloud", "db_touch_seconds"): "60",
    ("database", "url"): "sqlite:///{data_dir}/educloud.sqlite3",
    ("bus", "url"): "memory://",
    ("bus", "cloud_url"): "",
    ("cache", "url"): "locmem://",
    ("nc", "hypervisor"): "qemu",
    ("nc", "stop_timeout_seconds"): "60",
    ("nc", "ready_timeout_seconds"): "300",
    ("nc", "command_slots"): "32",
    ("nc", "max_parallel_boots"): "4",
    ("nc", "lease_file"): "{data_dir}/cc/dhcp/dnsmasq.leases",
    ("nc", "poweroff_command"): "systemctl poweroff",
    ("nc", "host_mode"): "false",
    ("nc", "kiosk"): "false",
    ("cc", "port_range"): "6400-6999",
    ("cc", "cpu_overcommit"): "4",
    ("cc", "kinds"): "vs,rvd,lvd",
    ("cc", "manage_network"): "true",
    ("cc", "wake_broadcast"): "255.255.255.255",
    ("cc", "wake_interface"): "",
    ("clc", "console_port"): "6080",
    ("clc", "console_listen"): "",
    ("clc", "idle_stop_minutes"): "60",
    ("clc", "login_max_failures"): "5",
    ("clc", "login_max_failures_per_address"): "100",
    ("clc", "login_lockout_minutes"): "15",
    ("clc", "session_idle_minutes"): "30",
    ("walrus", "cors_origins"): "",
    ("walrus", "upload_expiry_hours"): "24",
    ("sc", "dav_quota_mb"): "1024",
    ("sc", "capacity_gb"): "0",
    ("sc", "iscsi_listen"): "",
    ("sc", "tgt_control_port"): "3260",
    ("watch", "raw_days"): "2",
    ("watch", "rollup_5m_days"): "15",
    ("watch", "rollup_1h_days"): "455",
    ("watch", "sample_seconds"): "60",
    ("watch", "evaluate_seconds"): "60",
    ("watch", "prometheus_token"): "",
}
# Settings of earlier versions, with what replaced them (a file that still has one says so instead of starting).
RETIRED: dict[tuple[str, str], str] = {
    ("cloud", "key"): "every host has a key of its own now, made at its first start; remove the line and enrol the "
                      "host (a join token in host.join_token, or approve it in the console; docs/security.md)",
}
HYPERVISORS = ("qemu", "virtualbox")
INSTANCE_KINDS = ("vs", "rvd", "lvd")


class ConfigError(ImproperlyConfigured):
    """A setting is missing or wrong; the message names the setting and the environment variable."""


def env_name(section: str, key: str) -> str:
    return f"EDUCLOUD_{section.upper()}_{key.upper()}"


def _setting_error(section: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"setting {section}.{key} ({env_name(section, key)}): {message}")


@dataclass(frozen=True)
class Config:
    """The validated settings of one host."""

    name: str
    roles: tuple[str, ...]
    ip: str
    mac: str
    cluster: str
    data_dir: Path
    listen_host: str
    listen_port: int
    debug: bool
    clc_url: str
    cc_url: str
    walrus_url: str
    image_cache_bytes: int
    heartbeat_seconds: float
    missed_heartbeats: int
    db_touch_seconds: float
    database_url: str
    bus_url: str
    cloud_bus_url: str
    cache_url: str
    hypervisor: str = "qemu"
    vm_stop_timeout: float = 60.0
    # How long a booted guest may show no sign of life before it is reported "running, not answering".
    vm_ready_timeout: float = 300.0
    command_slots: int = 32
    # How many of the node's VMs may boot at once (0: no cap); the runs beyond it wait in line. Booting is when a
    # guest costs its node most CPU (firmware, kernel, services starting; all emulated under TCG): 15 started
    # together share the cores, each boots many times slower and none is up early. Four is about one boot per core
    # of a small (4-core) node, so each boots in about its usual time and a class comes up in waves; a larger node
    # may raise it.
    max_parallel_boots: int = 4
    # The dnsmasq lease file where the guests' DHCP leases show (the CC's, when it runs on this host).
    lease_file: Path | None = None
    host_mode: bool = False
    kiosk: bool = False
    port_range: tuple[int, int] = (6400, 6999)
    cpu_overcommit: float = 4.0
    cluster_kinds: tuple[str, ...] = INSTANCE_KINDS
    manage_network: bool = True
    walrus_cors_origins: tuple[str, ...] = ()
    upload_expiry_seconds: float = 24 * 3600.0
    poweroff_argv: tuple[str, ...] = ("systemctl", "poweroff")
    wake_broadcast: str = "255.255.255.255"
    wake_interface: str = ""
    console_port: int = 6080
    console_listen: str = "127.0.0.1"
    idle_stop_minutes: float = 60.0
    join_token: str = field(default="", repr=False)
    login_max_failures: int = 5
    login_max_failures_per_address: int = 100
    login_lockout_minutes: int = 15
    session_idle_minutes: int = 30
    # The storage controller's volumes: at most this many bytes of volumes and snapshots (0: the volume directory's
    # file system), the address:port its tgtd serves iSCSI on, and that tgtd's management port (tgtadm -C).
    sc_capacity_bytes: int = 0
    iscsi_listen: tuple[str, int] = ("127.0.0.1", 3261)
    tgt_control_port: int = 3260
    # The most a WebDAV share holds: each owner-group's share and each account's home (sc.dav_quota_mb).
    dav_quota_bytes: int = 2**30
    # How long the watch role keeps raw metric points and their 5-minute and 1-hour rollups (days), and how often
    # nodes and hosts sample their metrics (seconds).
    watch_raw_days: float = 2.0
    watch_rollup_5m_days: float = 15.0
    watch_rollup_1h_days: float = 455.0
    watch_sample_seconds: int = 60
    # How often the watch's alarms are evaluated: the first schedule of the "Evaluate alarms" job, made by the CLC's
    # host (a super administrator may change it later on the jobs' admin page).
    watch_evaluate_seconds: int = 60
    # The bearer token a Prometheus scraper sends to the watch role's text endpoint ("": the endpoint is off).
    watch_prometheus_token: str = field(default="", repr=False)
    source: str = field(default="")

    @property
    def api_url(self) -> str:
        """The base URL other roles use to reach this host's REST API."""
        return f"http://{self.ip}:{self.listen_port}"

    @property
    def offline_after_seconds(self) -> float:
        return self.heartbeat_seconds * self.missed_heartbeats

    def has_role(self, role: str) -> bool:
        return role in self.roles


def read_peer_ip(path: Path) -> str | None:
    """Read the notes' ``IP='x.x.x.x'`` peer file (also the original INI form ``[server] IP=``)."""
    if not path.is_file():
        return None
    match = re.search(r"^\s*IP\s*=\s*['\"]?([^'\"\s]+)['\"]?\s*$", path.read_text(), re.MULTILINE)
    if not match:
        raise ConfigError(f"peer file {path}: no line IP='x.x.x.x'")
    try:
        return validate_ip(match[1], "IP")
    except InvalidValue as exc:
        raise ConfigError(f"peer file {path}: {exc}") from None


def _raw_values(path: str | None, environ: os._Environ | dict) -> tuple[dict[tuple[str, str], str], str]:
    parser = configparser.ConfigParser(interpolation=None)
    source = ""
    if path:
        if not Path(path).is_file():
            raise ConfigError(f"configuration file {path} (EDUCLOUD_CONF) does not exist")
        parser.read(path)
        source = path
        known_sections = {section for section, _ in SETTINGS}
        for section in parser.sections():
            if section not in known_sections:
                raise ConfigError(f"{path}: unknown section [{section}]; known: {', '.join(sorted(known_sections))}")
            for key in parser[section]:
                if (section, key) in RETIRED:
                    raise ConfigError(f"{path}: {section}.{key} is no longer a setting: {RETIRED[(section, key)]}")
                if (section, key) not in SETTINGS:
                    raise ConfigError(f"{path}: unknown setting {section}.{key}")
    for section, key in RETIRED:
        if env_name(section, key) in environ:
            raise ConfigError(f"{env_name(section, key)} is no longer a setting: {RETIRED[(section, key)]}")
    values: dict[tuple[str, str], str] = {}
    for (section, key), default in SETTINGS.items():
        value = environ.get(env_name(section, key))
        if value is None and (section, key) == ("host", "roles"):
            value = environ.get("EDUCLOUD_ROLES")
        if value is None and parser.has_option(section, key):
            value = parser.get(section, key)
        if value is None:
            value = default
        if value is None:
            raise _setting_error(section, key, "is required but not set")
        values[(section, key)] = value.strip()
    return values, source


def _parse_url(section: str, key: str, value: str, schemes: tuple[str, ...]) -> str:
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        known = ", ".join(s + "://" for s in schemes)
        raise _setting_error(section, key, f"unsupported URL {value!r}; use one of {known}")
    return value


def _parse_number(section: str, key: str, value: str, kind: type, minimum: float) -> float:
    try:
        number = kind(value)
    except ValueError:
        raise _setting_error(section, key, f"{value!r} is not a number") from None
    if number < minimum:
        raise _setting_error(section, key, f"{value!r} is below the minimum {minimum}")
    return number


def _parse_origins(section: str, key: str, value: str) -> tuple[str, ...]:
    """A comma list of web origins (``https://clc.school.example:8443``), lower-cased as browsers send them."""
    origins = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        parts = urlsplit(item)
        bare = parts.path in ("", "/") and not (parts.query or parts.fragment or "@" in parts.netloc)
        if parts.scheme not in ("http", "https") or not parts.hostname or not bare:
            raise _setting_error(section, key, f"{item!r} is not an origin like https://host or http://host:port")
        origins.append(f"{parts.scheme}://{parts.netloc}".lower())
    return tuple(origins)


def _parse_boot_cap(value: str) -> int:
    """``nc.max_parallel_boots``: a whole number of boots, 0 for no cap."""
    if not re.fullmatch(r"\d{1,6}", value):
        raise _setting_error("nc", "max_parallel_boots",
                             f"{value!r} is not a whole number of VMs booting at once (0 or more; 0 means no cap)")
    return int(value)


def _flag(value: str) -> bool:
    return value.lower() in ("1", "true", "yes", "on")


def _parse_port_range(value: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*", value)
    low, high = (int(match[1]), int(match[2])) if match else (0, 0)
    # Consoles are VNC displays (5900 + n) under QEMU, so the pool starts at 5900 or above.
    if not match or not 5900 <= low <= high <= 65535:
        raise _setting_error("cc", "port_range", f"{value!r} is not LOW-HIGH with 5900 <= LOW <= HIGH <= 65535")
    return low, high


def _parse_iscsi_listen(value: str, ip: str) -> tuple[str, int]:
    """``sc.iscsi_listen``: ``ADDRESS:PORT`` (an IPv4 address), empty for this host's ``host.ip`` and 3261 (not
    iSCSI's 3260: Debian starts the system's own tgtd on it when the tgt package is installed)."""
    if not value:
        return ip, 3261
    host, _, port = value.rpartition(":")
    try:
        address = str(ipaddress.IPv4Address(host))
    except ValueError:
        address = ""
    if not address or not port.isdigit() or not 0 < int(port) < 65536:
        raise _setting_error("sc", "iscsi_listen", f"{value!r} is not ADDRESS:PORT (an IPv4 address and a TCP port)")
    return address, int(port)


def _parse_tgt_control_port(value: str) -> int:
    """``sc.tgt_control_port``: tgtd's management port (its socket is /var/run/tgtd/socket.<port>); tgtd keeps it
    in a short, so 0 to 32767."""
    if not re.fullmatch(r"\d{1,5}", value) or int(value) > 32767:
        raise _setting_error("sc", "tgt_control_port", f"{value!r} is not a tgtd management port (0 to 32767)")
    return int(value)


def _parse_watch_retention(get) -> tuple[float, float, float]:
    """``watch.raw_days``, ``watch.rollup_5m_days``, ``watch.rollup_1h_days``: each kept at least as long as the
    finer one before it, so that a range a query may ask at a coarser period never ends before the finer one's."""
    keys = ("raw_days", "rollup_5m_days", "rollup_1h_days")
    days = [_parse_number("watch", key, get("watch", key), float, 0.1) for key in keys]
    for finer in (0, 1):
        if days[finer + 1] < days[finer]:
            raise _setting_error("watch", keys[finer + 1], f"{days[finer + 1]:g} days is shorter than "
                                 f"watch.{keys[finer]} ({days[finer]:g} days): coarser statistics are kept longer")
    return days[0], days[1], days[2]


def load_config(environ: os._Environ | dict | None = None) -> Config:
    """Load and validate this host's configuration; raise ConfigError naming the first wrong setting."""
    environ = os.environ if environ is None else environ
    path = environ.get("EDUCLOUD_CONF") or (DEFAULT_CONF if Path(DEFAULT_CONF).is_file() else None)
    raw, source = _raw_values(path, environ)

    def get(section: str, key: str) -> str:
        return raw[(section, key)]

    try:
        name = validate_name(get("host", "name"), "host.name")
        ip = validate_ip(get("host", "ip"), "host.ip")
        mac = validate_mac(get("host", "mac"), "host.mac") if get("host", "mac") else ""
        cluster = validate_name(get("host", "cluster"), "host.cluster")
    except InvalidValue as exc:
        section, key = exc.field.split(".")
        raise _setting_error(section, key, exc.message) from None

    roles = tuple(role.strip() for role in get("host", "roles").split(",") if role.strip())
    unknown = [role for role in roles if role not in ROLES]
    if not roles or unknown:
        raise _setting_error("host", "roles",
                             f"{get('host', 'roles')!r}: roles must be a comma list of {', '.join(ROLES)}")

    data_dir = Path(get("host", "data_dir")).expanduser().resolve()
    listen_host, _, listen_port = get("host", "listen").rpartition(":")
    port = int(_parse_number("host", "listen", listen_port, int, 1)) if listen_port.isdigit() else 0
    if not listen_host or not 0 < port < 65536:
        raise _setting_error("host", "listen", f"{get('host', 'listen')!r} is not HOST:PORT")

    join_token = get("host", "join_token")
    if join_token and not re.fullmatch(r"[A-Za-z0-9_-]{20,64}", join_token):
        raise _setting_error("host", "join_token", "is not a join token (as the console or issue_join_token gave it)")

    peer_dir = Path(get("host", "peer_config_dir"))
    clc_url = get("cloud", "clc_url")
    if not clc_url and (peer_ip := read_peer_ip(peer_dir / "clc.conf")):
        clc_url = f"http://{peer_ip}"
    cc_url = get("cloud", "cc_url")
    if not cc_url and (peer_ip := read_peer_ip(peer_dir / "cc.conf")):
        cc_url = f"http://{peer_ip}"
    if not clc_url and "clc" in roles:
        clc_url = f"http://{ip}:{port}"
    if not cc_url and "cc" in roles:
        cc_url = f"http://{ip}:{port}"
    needs_clc = [r for r in roles if r in ("walrus", "cc")]
    if needs_clc and not clc_url:
        raise _setting_error("cloud", "clc_url",
                             f"is required for role {needs_clc[0]} (or put IP='x.x.x.x' in {peer_dir}/clc.conf)")
    needs_cc = [r for r in roles if r in ("nc", "sc")]
    if needs_cc and not cc_url:
        raise _setting_error("cloud", "cc_url",
                             f"is required for role {needs_cc[0]} (or put IP='x.x.x.x' in {peer_dir}/cc.conf)")
    # Walrus usually lives beside the CLC (as in the original design), so that is where it is looked for by default.
    walrus_url = get("cloud", "walrus_url") or clc_url
    for url_key, url in (("clc_url", clc_url), ("cc_url", cc_url), ("walrus_url", walrus_url)):
        if url:
            _parse_url("cloud", url_key, url, ("http", "https"))

    database_url = _parse_url("database", "url", get("database", "url").replace("{data_dir}", str(data_dir)),
                              ("sqlite", "mysql"))
    bus_url = _parse_url("bus", "url", get("bus", "url"), ("memory", "amqp", "amqps"))
    cloud = get("bus", "cloud_url")
    cloud_bus_url = _parse_url("bus", "cloud_url", cloud, ("memory", "amqp", "amqps")) if cloud else bus_url

    hypervisor = get("nc", "hypervisor")
    if hypervisor not in HYPERVISORS:
        raise _setting_error("nc", "hypervisor", f"{hypervisor!r} is not one of {', '.join(HYPERVISORS)}")
    kinds = tuple(kind.strip() for kind in get("cc", "kinds").split(",") if kind.strip())
    if not kinds or any(kind not in INSTANCE_KINDS for kind in kinds):
        raise _setting_error("cc", "kinds", f"{get('cc', 'kinds')!r}: a comma list of {', '.join(INSTANCE_KINDS)}")
    try:  # split like a shell would, but run without one: an argv list
        poweroff_argv = tuple(shlex.split(get("nc", "poweroff_command")))
    except ValueError as exc:
        raise _setting_error("nc", "poweroff_command", f"cannot be split into words: {exc}") from None
    if not poweroff_argv:
        raise _setting_error("nc", "poweroff_command", "is empty; give the command that powers this host off")
    host_mode, kiosk = _flag(get("nc", "host_mode")), _flag(get("nc", "kiosk"))
    if host_mode and "nc" not in roles:
        raise _setting_error("nc", "host_mode", "is for the node controller of a classroom PC; host.roles has no nc")
    if kiosk and not host_mode:
        raise _setting_error("nc", "kiosk", "needs nc.host_mode = true (the kiosk lists the desktops of this PC)")
    if host_mode and not mac:
        # A classroom PC is known by its MAC (and woken by it): take its first network card's unless one is set.
        mac = first_mac()
        if not mac:
            raise _setting_error("host", "mac", "is required with nc.host_mode and this machine has no network card "
                                                "with a MAC address to take it from")
    try:
        wake_broadcast = validate_broadcast(get("cc", "wake_broadcast"), "cc.wake_broadcast")
        interface = get("cc", "wake_interface")
        wake_interface = validate_interface(interface, "cc.wake_interface") if interface else ""
    except InvalidValue as exc:
        section, key = exc.field.split(".")
        raise _setting_error(section, key, exc.message) from None
    console_port = int(_parse_number("clc", "console_port", get("clc", "console_port"), int, 0))
    if console_port > 65535:
        raise _setting_error("clc", "console_port", f"{console_port} is not a TCP port (0 turns the proxy off)")
    # Unset, the console proxy listens where the web server does: browsers reach it where they reach the pages.
    console_listen = get("clc", "console_listen") or listen_host
    if get("clc", "console_listen"):
        try:
            console_listen = validate_ip(console_listen, "clc.console_listen")
        except InvalidValue as exc:
            raise _setting_error("clc", "console_listen", exc.message) from None
    raw_days, rollup_5m_days, rollup_1h_days = _parse_watch_retention(get)
    prometheus_token = get("watch", "prometheus_token")
    # A header value of the token68 alphabet, long enough that guessing it is no way in.
    if prometheus_token and not re.fullmatch(r"[A-Za-z0-9._~+/=-]{16,256}", prometheus_token):
        raise _setting_error("watch", "prometheus_token", "is not a token: 16 to 256 letters, digits and ._~+/=-")
    idle_stop_minutes = _parse_number("clc", "idle_stop_minutes", get("clc", "idle_stop_minutes"), float, 0)
    if 0 < idle_stop_minutes < 1:  # an open console marks its desktop in use every 30 s: less would stop one in use
        raise _setting_error("clc", "idle_stop_minutes", f"{idle_stop_minutes:g} is below 1 minute; 0 means never")

    return Config(
        name=name,
        roles=roles,
        ip=ip,
        mac=mac,
        cluster=cluster,
        data_dir=data_dir,
        listen_host=listen_host,
        listen_port=port,
        debug=_flag(get("host", "debug")),
        join_token=join_token,
        clc_url=clc_url.rstrip("/"),
        cc_url=cc_url.rstrip("/"),
        walrus_url=walrus_url.rstrip("/"),
        image_cache_bytes=int(_parse_number("host", "image_cache_gb", get("host", "image_cache_gb"), float, 0.001)
                              * 2**30),
        heartbeat_seconds=_parse_number("cloud", "heartbeat_seconds", get("cloud", "heartbeat_seconds"), float, 0.1),
        missed_heartbeats=int(_parse_number("cloud", "missed_heartbeats", get("cloud", "missed_heartbeats"), int, 1)),
        db_touch_seconds=_parse_number("cloud", "db_touch_seconds", get("cloud", "db_touch_seconds"), float, 0),
        database_url=database_url,
        bus_url=bus_url,
        cloud_bus_url=cloud_bus_url,
        cache_url=_parse_url("cache", "url", get("cache", "url"), ("locmem", "memcached")),
        hypervisor=hypervisor,
        vm_stop_timeout=_parse_number("nc", "stop_timeout_seconds", get("nc", "stop_timeout_seconds"), float, 1),
        vm_ready_timeout=_parse_number("nc", "ready_timeout_seconds", get("nc", "ready_timeout_seconds"), float, 1),
        command_slots=int(_parse_number("nc", "command_slots", get("nc", "command_slots"), int, 1)),
        max_parallel_boots=_parse_boot_cap(get("nc", "max_parallel_boots")),
        lease_file=Path(get("nc", "lease_file").replace("{data_dir}", str(data_dir))) if get("nc", "lease_file")
        else None,
        host_mode=host_mode,
        kiosk=kiosk,
        port_range=_parse_port_range(get("cc", "port_range")),
        cpu_overcommit=_parse_number("cc", "cpu_overcommit", get("cc", "cpu_overcommit"), float, 1),
        cluster_kinds=kinds,
        manage_network=_flag(get("cc", "manage_network")),
        walrus_cors_origins=_parse_origins("walrus", "cors_origins", get("walrus", "cors_origins")),
        upload_expiry_seconds=_parse_number("walrus", "upload_expiry_hours", get("walrus", "upload_expiry_hours"),
                                            float, 0.01) * 3600,
        poweroff_argv=poweroff_argv,
        wake_broadcast=wake_broadcast,
        wake_interface=wake_interface,
        console_port=console_port,
        console_listen=console_listen,
        idle_stop_minutes=idle_stop_minutes,
        login_max_failures=int(_parse_number("clc", "login_max_failures", get("clc", "login_max_failures"), int, 1)),
        login_max_failures_per_address=int(_parse_number("clc", "login_max_failures_per_address",
                                                         get("clc", "login_max_failures_per_address"), int, 1)),
        login_lockout_minutes=int(_parse_number("clc", "login_lockout_minutes", get("clc", "login_lockout_minutes"),
                                                int, 1)),
        session_idle_minutes=int(_parse_number("clc", "session_idle_minutes", get("clc", "session_idle_minutes"), int,
                                               1)),
        sc_capacity_bytes=int(_parse_number("sc", "capacity_gb", get("sc", "capacity_gb"), float, 0) * 2**30),
        iscsi_listen=_parse_iscsi_listen(get("sc", "iscsi_listen"), ip),
        tgt_control_port=_parse_tgt_control_port(get("sc", "tgt_control_port")),
        dav_quota_bytes=int(_parse_number("sc", "dav_quota_mb", get("sc", "dav_quota_mb"), float, 0.001) * 2**20),
        watch_raw_days=raw_days,
        watch_rollup_5m_days=rollup_5m_days,
        watch_rollup_1h_days=rollup_1h_days,
        watch_sample_seconds=int(_parse_number("watch", "sample_seconds", get("watch", "sample_seconds"), int, 10)),
        watch_evaluate_seconds=int(_parse_number("watch", "evaluate_seconds", get("watch", "evaluate_seconds"), int,
                                                 10)),
        watch_prometheus_token=prometheus_token,
        source=source,
    )


def django_database(url: str) -> dict:
    """Translate ``sqlite:///path`` or ``mysql://user:pass@host:port/name`` into a Django DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": "/" + parts.path.lstrip("/"),
                # IMMEDIATE: a writer waits for the lock instead of failing at once when
                # threads (web and daemons of one host) write together; WAL lets readers go on meanwhile.
                "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE",
                            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}}
    name = parts.path.lstrip("/")
    if not name:
        raise _setting_error("database", "url", f"{url!r} names no database (mysql://user@host:port/NAME)")
    return {
        "ENGINE": "django.db.backends.mysql",
        "NAME": name,
        "USER": parts.username or "root",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 3306),
        "OPTIONS": {"charset": "utf8mb4"},
        "TEST": {"NAME": f"test_{name}", "CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
    }


def celery_broker_url(config: Config) -> str:
    """Where this host's commands (Celery tasks) go: the cluster's RabbitMQ, or on the embedded default (an
    in-process status bus) the host's own SQLite broker file, which keeps queued and running commands across a kill
    -9 (``luhyaapi.sqlite_broker``)."""
    if urlsplit(config.bus_url).scheme == "memory":
        return f"sqlite-broker://{config.data_dir}/broker.sqlite3"
    return config.bus_url


def django_cache(url: str) -> dict:
    """Translate ``locmem://`` or ``memcached://host:port`` into a Django CACHES entry."""
    parts = urlsplit(url)
    if parts.scheme == "locmem":
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "educloud",
                "OPTIONS": {"MAX_ENTRIES": 1_000_000}}
    return {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": f"{parts.hostname or '127.0.0.1'}:{parts.port or 11211}",
        "OPTIONS": {"no_delay": True, "ignore_exc": False, "connect_timeout": 2, "timeout": 5},
    }
