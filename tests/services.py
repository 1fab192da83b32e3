"""Real services for tests: a scratch MariaDB database, memcached, eduCloud roles as separate processes, and the
ways a test acts on them: as a person through the API (``ConsoleClient``), as the administrator of a host on the host
(``RoleProcess.manage``: join tokens, image uploads), or as a host with its own key (``RoleProcess.key``)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.keys import KEY_DIR, PRIVATE_FILE, HostKey, host_key
from luhyaapi.messages import EnrolmentRequest

ROOT = Path(__file__).resolve().parent.parent
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
# The first administrator every RoleProcess running the CLC creates (``init_cloud``), for tests that log in.
ADMIN_USER, ADMIN_PASSWORD = "admin", "e2e-admin-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


TGT_SOCKETS = Path("/var/run/tgtd")


def free_tgt_control_port() -> int:
    """A tgtd management port no tgtd on this machine uses, neither its socket nor its lock there (tgtd keeps the
    port in a short: at most 32767), so a test's or benchmark's SC never talks to another's tgtd."""
    while True:
        port = 20000 + int.from_bytes(os.urandom(2), "big") % 12768
        if not (TGT_SOCKETS / f"socket.{port}").exists() and not (TGT_SOCKETS / f"socket.{port}.lock").exists():
            return port


@contextmanager
def scratch_mariadb_database(prefix: str = "educloud_test"):
    """A database of its own on the machine's MariaDB; dropped afterwards. Yields its mysql:// URL."""
    import MySQLdb

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    connection = MySQLdb.connect(host=MARIADB["host"], port=MARIADB["port"], user=MARIADB["user"],
                                 password=MARIADB["password"])
    try:
        connection.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        yield f"mysql://{MARIADB['user']}@{MARIADB['host']}:{MARIADB['port']}/{name}"
    finally:
        connection.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        connection.close()


@contextmanager
def memcached(private: bool = False):
    """The memcached the test command started (EDUCLOUD_TEST_MEMCACHED=host:port), or, when there is none or a
    ``private`` one is asked for (so no other test's keys can be seen), one started here."""
    address = os.environ.get("EDUCLOUD_TEST_MEMCACHED")
    if address and not private:
        yield f"memcached://{address}"
        return
    binary = shutil.which("memcached")
    if binary is None:
        raise RuntimeError("memcached is not installed; run the test command (tests/run.sh), which installs it")
    port = free_port()
    process = subprocess.Popen([binary, "-u", "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody"),
                                "-l", "127.0.0.1", "-p", str(port), "-m", "64"])
    try:
        _wait_port(port, 10)
        yield f"memcached://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class RoleProcess:
    """One eduCloud host (``manage.py run_cloud``) as a separate process with its own configuration file. A host
    without the clc role enrols at start: with ``join_token`` (from ``issue_join_token`` on the CLC's process) it is
    trusted at once, without one it waits for an administrator's approval."""

    def __init__(self, workdir: Path, name: str, roles: str, settings: dict[str, dict[str, str]],
                 netns: str | None = None, ip: str = "127.0.0.1", join_token: str = "") -> None:
        """``netns``: run it inside that network namespace (``ip netns exec``), where ``ip`` is its address."""
        self.name = name
        self.netns = netns
        self.port = free_port()
        self.url = f"http://{ip}:{self.port}"
        self.dir = workdir / name
        self.dir.mkdir(parents=True)
        sections = {"host": {"name": name, "roles": roles, "data_dir": str(self.dir), "ip": ip,
                             "listen": f"{ip}:{self.port}", "peer_config_dir": str(self.dir)},
                    # A test host never powers the machine off, whatever a test sends it.
                    "nc": {"poweroff_command": "true"},
                    # Nor its network: a test that wants the CC to manage one runs it in its own namespace.
                    "cc": {"manage_network": "false"},
                    # Its console proxy (CLC hosts) on a port of its own, not the default one a real cloud may hold.
                    "clc": {"console_port": str(free_port())}}
        if join_token:
            sections["host"]["join_token"] = join_token
        for section, values in settings.items():
            sections.setdefault(section, {}).update(values)
        self.conf = self.dir / "educloud.conf"
        self.conf.write_text("".join(f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n"
                                     for section, values in sections.items()))
        self.log = self.dir / "run.log"
        self.process: subprocess.Popen | None = None

    def environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("EDUCLOUD_")}
        env["EDUCLOUD_CONF"] = str(self.conf)
        env["DJANGO_SETTINGS_MODULE"] = "educloud.settings"
        env["EDUCLOUD_ADMIN_PASSWORD"] = ADMIN_PASSWORD
        return env

    def _argv(self, *command: str) -> list[str]:
        netns = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*netns, sys.executable, str(ROOT / "manage.py"), *command]

    def start(self, *options: str) -> RoleProcess:
        """Start ``manage.py run_cloud`` with ``options`` (``--without celery-worker``)."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self._argv("run_cloud", *options), cwd=ROOT, env=self.environment(),
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def spawn(self, argv: list[str], log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start another program of this host (a ``celery`` worker), with its configuration; the caller stops it."""
        with (self.dir / log_name).open("ab") as log:
            return subprocess.Popen(argv, cwd=ROOT, env=self.environment() | (env or {}), stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def manage(self, *command: str, timeout: float = 300) -> str:
        """Run ``manage.py <command>`` as this host's administrator does: on the host (in its network namespace,
        with its configuration); its stdout. RuntimeError with its output if it fails."""
        result = subprocess.run(self._argv(*command), cwd=ROOT, env=self.environment(), capture_output=True,
                                text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(command)} on {self.name} exited with {result.returncode}:\n"
                               f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        return result.stdout

    def issue_join_token(self, kind: str = "server", *, roles: str = "", cluster: str = "cluster1",
                         owner_group: str = "", uses: int = 1) -> str:
        """A join token issued on this (running CLC) host with ``manage.py issue_join_token``: for servers of
        ``roles`` (a comma list), or for classroom PCs going into ``owner_group``."""
        argv = ["issue_join_token", "--kind", kind, "--cluster", cluster, "--uses", str(uses),
                "--label", f"e2e {kind} {roles or owner_group}"]
        argv += ["--roles", roles] if roles else []
        argv += ["--owner-group", owner_group] if owner_group else []
        lines = self.manage(*argv).split()
        if len(lines) != 1:
            raise RuntimeError(f"issue_join_token printed {lines!r}, not one token")
        return lines[0]

    def upload_image(self, path: Path, name: str, owner_group: str = "edu") -> str:
        """Upload an image file with ``manage.py upload_image`` on this (CLC) host; the new image's id."""
        printed = self.manage("upload_image", str(path), "--name", name, "--owner-group", owner_group)
        match = re.match(r"^(img-[0-9a-f]+) version (\d+) ", printed.strip().splitlines()[-1])
        if match is None:
            raise RuntimeError(f"upload_image printed {printed!r}")
        return match[1]

    def key(self) -> HostKey:
        """This host's own key pair, read from its data directory (made by the host at its first start), for a test
        that calls as this host."""
        if not (self.dir / KEY_DIR / PRIVATE_FILE).is_file():
            raise RuntimeError(f"{self.name} has no key yet: {self.dir / KEY_DIR / PRIVATE_FILE}")
        return host_key(self.name, self.dir)

    def wait_listening(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            if self._listening():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen on {self.port} within {timeout}s:\n{self.tail()}")

    def _listening(self) -> bool:
        if self.netns:  # not reachable from here: look at the sockets of its namespace instead
            return _listens(self.process.pid, self.port)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        """Die at once, as a crashed or unplugged machine would (no goodbye message)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


class ConsoleClient:
    """The CLC's API as a person uses it (by default the first administrator): logged in through the console's login
    page, the session cookie on every call and the CSRF token on every unsafe one. The calls of a ``RoleClient``
    (``get``, ``post``, ``request``, ``RemoteError`` on an answer >= 400); it logs in at its first call, so a test
    running it on a thread inside a network namespace logs in from there."""

    LOGIN_PATH = "/clc/login/"
    UPLOAD_PIECE_BYTES = 8 * 1024 * 1024  # as the console's upload page sends a file (clc/static/clc/upload.js)

    def __init__(self, base_url: str, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD,
                 timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self._session: requests.Session | None = None

    def _logged_in(self) -> requests.Session:
        if self._session is not None:
            return self._session
        session = requests.Session()
        url = self.base_url + self.LOGIN_PATH
        try:
            form = session.get(url, timeout=self.timeout)
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
            if form.status_code != 200 or token is None:
                raise RemoteError(url, form.status_code, "no login form with a CSRF token")
            answer = session.post(url, data={"csrfmiddlewaretoken": token[1], "username": self.username,
                                             "password": self.password}, timeout=self.timeout,
                                  allow_redirects=False)
        except requests.RequestException as exc:
            raise RemoteError(url, 0, str(exc)) from exc
        if answer.status_code != 302 or "sessionid" not in session.cookies:
            raise RemoteError(url, answer.status_code, f"{self.username} could not log in")
        self._session = session
        return session

    def request(self, method: str, path: str, payload: dict | None = None) -> dict:
        session = self._logged_in()
        url = self.base_url + path
        headers = {}
        if method not in ("GET", "HEAD", "OPTIONS"):
            headers["X-CSRFToken"] = session.cookies["csrftoken"]  # Django's new one after the login
        try:
            response = session.request(method, url, json=payload, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RemoteError(url, 0, str(exc)) from exc
        if response.status_code >= 400:
            body = _json_or_none(response)
            detail = body.get("detail") if isinstance(body, dict) and isinstance(body.get("detail"), str) else None
            raise RemoteError(url, response.status_code, detail or response.text[:500],
                              body if isinstance(body, dict) else None)
        return response.json() if response.content else {}

    def get(self, path: str) -> dict:
        return self.request("GET", path)

    def page(self, path: str) -> str:
        """A console page's HTML, as the logged-in person's browser gets it; RemoteError for an error status."""
        url = self.base_url + path
        try:
            response = self._logged_in().get(url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RemoteError(url, 0, str(exc)) from exc
        if response.status_code >= 400:
            raise RemoteError(url, response.status_code, response.text[:500])
        return response.text

    def post(self, path: str, payload: dict) -> dict:
        return self.request("POST", path, payload)

    def upload_image(self, path: Path, name: str, owner_group: str = "edu", usage: str = "desktop") -> dict:
        """A new image with ``path`` as its file, made as the console's pages make it: the image created, an upload
        started (its answer carries walrus's pre-signed data URL), the file sent to that URL in pieces without
        any other credential, the upload completed. The image's record afterwards."""
        image = self.post("/clc/api/1.0/images/", {"name": name, "os_type": "linux", "arch": 64, "usage": usage,
                                                   "owner_group": owner_group})
        uploads = f"/clc/api/1.0/images/{image['image_id']}/uploads/"
        size = path.stat().st_size
        started = self.post(uploads, {"size": size})
        data_url = started["walrus_url"] + started["data_url"]
        offset = 0
        with path.open("rb") as source:
            while offset < size:
                piece = source.read(self.UPLOAD_PIECE_BYTES)
                response = requests.put(f"{data_url}&offset={offset}", data=piece, timeout=self.timeout,
                                        headers={"Content-Type": "application/octet-stream"})
                if response.status_code != 200:
                    raise RemoteError(data_url, response.status_code, response.text[:500])
                offset = response.json()["offset"]
        return self.post(f"{uploads}{started['upload_id']}/complete/", {})


def _json_or_none(response: requests.Response):
    try:
        return response.json()
    except ValueError:
        return None


def enrol_keys(clc: RoleProcess, names: list[str], roles: str = "nc", cluster: str = "cluster1") -> list[HostKey]:
    """Key pairs for hosts ``names`` (made here, in memory) enrolled with the running CLC ``clc`` as servers of
    ``roles``, the way a host enrols: a join token issued on the CLC host, then each public key sent to
    ``enrolments/`` with it. For a benchmark or test that stands in for such hosts."""
    token = clc.issue_join_token("server", roles=roles, cluster=cluster, uses=len(names))
    keys = []
    for name in names:
        key = HostKey(name, Ed25519PrivateKey.generate())
        request = EnrolmentRequest(name=name, kind="server", roles=roles.split(","), cluster=cluster,
                                   public_key=key.public_key, join_token=token)
        answer = RoleClient(clc.url, None).post("/clc/api/1.0/enrolments/", request.model_dump(mode="json"))
        if answer.get("state") != "active":
            raise RuntimeError(f"the CLC did not enrol {name}: {answer}")
        keys.append(key)
    return keys


def _listens(pid: int, port: int) -> bool:
    """Whether a TCP socket listens on ``port`` in the network namespace of process ``pid`` (its /proc view)."""
    try:
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    # Fields: slot, local address:port (hex), remote address, state (0A = LISTEN), ...
    return any(f[1].endswith(f":{port:04X}") and f[3] == "0A" for f in (line.split() for line in lines))


TEST_IMAGE_SCRIPT = ROOT / "tools" / "testimage" / "build.sh"
ARTIFACTS = Path(os.environ.get("EDUCLOUD_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))


def build_test_image(timeout: float = 1800) -> Path:
    """The project's bootable test VM image (``tools/testimage/build.sh``: built on first use, then reused)."""
    result = subprocess.run(["bash", str(TEST_IMAGE_SCRIPT)], capture_output=True, text=True, timeout=timeout,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{TEST_IMAGE_SCRIPT} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    image = Path(result.stdout.strip().splitlines()[-1])
    if not image.is_file():
        raise RuntimeError(f"{TEST_IMAGE_SCRIPT} printed {image}, which is not a file")
    return image


def free_port_block(count: int, low: int = 20000, high: int = 60000) -> tuple[int, int]:
    """A range of ``count`` consecutive loopback ports nobody listens on (for a cluster's port pool)."""
    for _attempt in range(200):
        start = int.from_bytes(os.urandom(2), "big") % (high - low - count) + low
        try:
            for port in range(start, start + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return start, start + count - 1
    raise RuntimeError(f"no {count} free consecutive ports between {low} and {high}")


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text`` (an instance id, a data directory)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and entry.name != str(os.getpid()):
            pids.append(int(entry.name))
    return pids


def vms_under(directory: Path) -> list[int]:
    """Pids of the QEMU processes whose files lie under ``directory`` (a test's or a benchmark's VMs)."""
    return [pid for pid in processes_mentioning(str(directory)) if b"qemu" in _comm(pid)]


def kill_vms_under(directory: Path) -> list[int]:
    """Kill every QEMU process whose files lie under ``directory`` (a test's leftovers); returns their pids."""
    pids = vms_under(directory)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def _comm(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/comm").read_bytes()
    except OSError:
        return b""


def wait_for(what: str, probe, timeout: float = 180.0, every: float = 0.5):
    """Call ``probe`` until it returns something true (returned), else fail the test saying what it waited for."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {last!r}")


def instance_record(client, insid: str) -> dict | None:
    """An instance as the CLC's API shows it through ``client`` (a ConsoleClient), or None once it is gone."""
    try:
        return client.get(f"/clc/api/1.0/instances/{insid}/")
    except RemoteError as exc:
        if exc.status == 404:
            return None
        raise


@contextmanager
def allinone_host(workdir: Path, *, ports: int, stop_timeout: int, nc: dict[str, str] | None = None,
                  sc: dict[str, str] | None = None, watch: dict[str, str] | None = None):
    """An all-in-one host (clc, walrus, cc, nc) with real QEMU and the test image file, as ``(host, image)``; ``nc``
    adds node settings; ``sc`` makes it a storage controller too, with those settings, and ``watch`` a watch host.
    Afterwards its VMs are killed, its log printed, and a VM left running fails the test."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed; the test command (tests/run.sh) installs it")
    image = build_test_image()
    low, high = free_port_block(ports)
    aio = RoleProcess(workdir, "aio", "clc,walrus,cc,nc" + (",sc" if sc is not None else "")
                      + (",watch" if watch is not None else ""),
                      {"cloud": {"heartbeat_seconds": "1", "missed_heartbeats": "5"},
                       "cc": {"port_range": f"{low}-{high}"},
                       "nc": {"stop_timeout_seconds": str(stop_timeout)} | (nc or {})}
                      | ({"sc": sc} if sc is not None else {}) | ({"watch": watch} if watch is not None else {}))
    aio.start().wait_listening()
    try:
        yield aio, image
    finally:
        aio.stop()
        leftovers = kill_vms_under(workdir)
        print(f"----- aio log -----\n{aio.tail(60)}")
        assert not leftovers, f"VM processes were left running: {leftovers}"


def one_host_servers(config, url: str, **node) -> None:
    """The records of one host running every role at ``url`` (the live server): walrus and the CC online, the node
    known to the CLC and to its CC (``node``: more of the CC's record of it, its capacity say)."""
    from cc.models import ClusterNode
    from luhyadb.models import Server

    for role in ("walrus", "cc"):
        Server.objects.create(name="aio", role=role, ip="127.0.0.1", cluster=config.cluster, api_url=url,
                              state="online")
    Server.objects.create(name="aio", role="nc", ip="127.0.0.1", cluster=config.cluster, state="online")
    ClusterNode.objects.create(name="aio", role="nc", ip="127.0.0.1", **node)
