"""Storage benchmark (issue 16): sequential MB/s of a volume through its iSCSI export, through a running guest's
attached disk and as the SC's raw file, and of WebDAV uploads and downloads beside ``cp``, all in the same rounds so
every way sees the same machine.

Per round, interleaved:

- **iSCSI**: a volume of ``--size-mb`` written whole through its export (``qemu-io`` on ``iscsi://`` with the
  export's CHAP account, as a node's QEMU logs in; ``write`` commands of ``--chunk-mb`` and a ``flush``, which tgt
  turns into an fdatasync of the file), then read whole the same way.
- **dd** on the SC's raw file of that volume: ``dd conv=notrunc,fdatasync``, then a read (both reads come from the
  page cache: the machine's caches are not dropped).
- **guest**: a second volume of the same SC and tgtd (``--guest-mb``, by default as large as the first), hot-plugged
  into a running VM of the project's test image by the node's QEMU driver (``attach_volume``: QMP ``blockdev-add`` of
  the iSCSI LUN, ``virtio-blk-pci``), written and read whole by the guest itself: its ``/cgi-bin/blockbench`` runs
  ``dd bs=1M`` inside the guest (a write of the bench pattern ending with an fsync, so the bytes reached the SC; a
  read after dropping the guest's page cache, so they come from the SC, from its page cache as for dd) and times it
  on the guest's clock, which is the figure: the HTTP request around it is not counted (it is timed too, and a guest
  that says it took longer than the request is refused as a broken clock). Before each round's write the volume's
  file is zeroed, and after it the file must hold the pattern whole, so no figure counts a write that did not land.
  The guest runs under QEMU with KVM, or TCG when the machine has none usable (the output says which): under TCG the
  guest's own CPU work (dd, the virtio driver) is emulated and is part of its figure.
- **WebDAV**: a host running the CLC, a CC and the SC (``manage.py run_cloud``, ``tests.services.RoleProcess``,
  the SC's waitress with wsgidav mounted in front of Django) on loopback, an account made through the CLC's API
  whose password the SC checks with the CLC. ``requests`` PUTs a file of ``--dav-mb`` (streamed from the open
  file with its Content-Length; sent chunked, exactly 1 GiB is refused with a 413, see ``DavShare.put``) into the
  account's home and GETs it back streamed into a file on the same disk (its sha256 checked); ``cp`` copies the
  same file on the same disk. None of the three calls fsync. The issue's goal is WebDAV at 0.5 of ``cp`` or
  better. The host's web server (waitress) holds a request's whole body in a temporary file before the application
  sees it, so a PUT's bytes are written twice on the SC (waitress's file, then the upload's), against once by ``cp``.
- **http**: the same PUT and GET against ``bench/bare_http.py``, a bare WSGI application on the host's web server
  settings in a process of its own: the ceiling of any Python application on that server, so the figures say how
  much is WebDAV's (wsgidav, the login, the quota) and how much is the web server's.

It prints MB/s per way and round with the load average (the machine is shared: other processes run meanwhile),
then the medians and the ratios. Everything it starts (tgtd, the VM, the WebDAV host) is stopped and its scratch
directory removed at the end. Run from the repository root:

    .venv/bin/python bench/volume_io.py
    .venv/bin/python bench/volume_io.py --size-mb 1024 --rounds 5 --dav-mb 1024
    .venv/bin/python bench/volume_io.py --rounds 3 --no-dav --size-mb 256      # iSCSI, dd and the guest
    .venv/bin/python bench/volume_io.py --no-guest --no-dav      # the SC's side only
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(tempfile.mkdtemp(prefix="educloud-bench-"))


from tests.services import free_port, free_tgt_control_port  # noqa: E402  (no Django yet: its settings come next)

os.environ.update({"EDUCLOUD_HOST_NAME": "bench-sc", "EDUCLOUD_HOST_ROLES": "sc", "EDUCLOUD_HOST_DATA_DIR": str(DATA),
                   "EDUCLOUD_CLOUD_CC_URL": "http://127.0.0.1:9/",
                   "EDUCLOUD_SC_ISCSI_LISTEN": f"127.0.0.1:{free_port()}",
                   "EDUCLOUD_SC_TGT_CONTROL_PORT": str(free_tgt_control_port()),
                   "DJANGO_SETTINGS_MODULE": "educloud.settings"})

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from luhyaapi.ids import new_id  # noqa: E402
from luhyaapi.vmspec import ConsoleSpec, NicSpec, PortForward, RuntimeOptions, VMSpec  # noqa: E402
from luhyaapi.volumes import VolumeTarget  # noqa: E402
from nc.drivers.qemu import QemuDriver  # noqa: E402
from nc.drivers.qemu_accel import detect_accelerator  # noqa: E402
from sc.constants import MiB  # noqa: E402
from sc.services.store import create_volume, volume_path  # noqa: E402
from sc.services.targets import export_volume, target_server  # noqa: E402
from tests.services import ConsoleClient, RoleProcess, build_test_image, free_port_block  # noqa: E402

NODE = "bench-nc"
BENCH_VOLUME, GUEST_VOLUME = "vol-0000be4c", "vol-0000be4d"
GUEST_BOOT_SECONDS = 300.0  # a TCG boot on a loaded 2-core machine
GUEST_MAX_MB = 1024  # the most /cgi-bin/blockbench moves in one pass
GUEST_PASS_SECONDS = 1800.0  # a whole pass of GUEST_MAX_MB under TCG on a loaded machine, with room to spare
# What /cgi-bin/blockbench writes over and over (tools/testimage/README.md): one MiB of it, to check the file with.
GUEST_PATTERN_MIB = (b"eduCloud-bench " * 273 + b"\n") * 256
DAV_PIECE = MiB
DAV_PASSWORD = "Bench-dav-pw-1"  # noqa: S105 - the scratch account's, on a host that lives for the run


def load() -> str:
    return "load " + " ".join(f"{value:.1f}" for value in os.getloadavg())


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def qemu_io(target: VolumeTarget, secret_file: Path, commands: list[str]) -> float:
    """Seconds ``qemu-io`` took to run ``commands`` on the target (login included)."""
    options = ",".join(["driver=iscsi", "transport=tcp", f"portal={target.host}:{target.port}",
                        f"target={target.iqn}", f"lun={target.lun}", f"user={target.chap_user}",
                        "password-secret=chap", f"initiator-name={target.initiator}"])
    argv = ["qemu-io", "--object", f"secret,id=chap,file={secret_file}", "--image-opts", options]
    for command in commands:
        argv += ["-c", command]
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0 or "failed" in result.stdout + result.stderr:
        raise SystemExit(f"qemu-io failed: {result.stderr or result.stdout}")
    return elapsed


def run(argv: list[str]) -> float:
    return timed(lambda: subprocess.run(argv, capture_output=True, check=True))


class GuestDisk:
    """A volume attached to a running VM of the test image, which the guest writes and reads whole through its
    ``/cgi-bin/blockbench``, timing each pass on its own clock."""

    def __init__(self, workdir: Path, image: Path, target: VolumeTarget, path: Path, mb: int) -> None:
        self.driver = QemuDriver(workdir)
        self.insid = new_id("instance")
        self.target, self.path, self.mb = target, path, mb
        self.amount = mb * MiB
        console, self.http_port = free_port_block(2, low=6000, high=6999)
        disk = self.driver.vm_dir(self.insid) / "root.qcow2"
        self.driver.clone_disk(image, disk)
        mac = "52:54:00:" + ":".join(f"{byte:02x}" for byte in secrets.token_bytes(3))
        options = RuntimeOptions(console=ConsoleSpec(protocol="vnc", port=console), disk_type="virtio", memory_mb=256,
                                 nics=(NicSpec(mac=mac, model="virtio",
                                               forwards=(PortForward(host_port=self.http_port, guest_port=80),)),))
        self.driver.create(VMSpec.build(self.insid, [str(disk)], options))

    def boot_and_attach(self) -> float:
        """Start the VM, wait for its page, attach the volume and wait until the guest sees it; seconds taken."""
        started = time.perf_counter()
        self.driver.start(self.insid)
        self._wait(lambda: self._ok(self._get("/")), GUEST_BOOT_SECONDS, "page from the guest")
        self.driver.attach_volume(self.insid, self.target)
        self._wait(lambda: self._ok(self._get("/cgi-bin/blockread", serial=self.target.volume_id, offset=0,
                                              length=1)), 120, f"disk {self.target.volume_id} in the guest")
        return time.perf_counter() - started

    def write(self) -> float:
        """The guest writes the volume whole; seconds on its clock. The file is zeroed first (written, not
        truncated: the guest then overwrites blocks the file has, as the iSCSI and dd rounds after the first do) and
        must hold the pattern after, so the write is known to have reached the SC."""
        zeros = bytes(MiB)
        with self.path.open("r+b") as data:
            for _ in range(self.mb):
                data.write(zeros)
            data.flush()
            os.fsync(data.fileno())
        seconds = self._bench("write")
        with self.path.open("rb") as data:
            for index in range(self.mb):
                if data.read(MiB) != GUEST_PATTERN_MIB:
                    raise SystemExit(f"MiB {index} of the volume's file is not what the guest wrote")
        return seconds

    def read(self) -> float:
        """The guest reads the volume whole, its page cache dropped first; seconds on its clock."""
        return self._bench("read")

    def close(self) -> None:
        for insid in self.driver.list_vms():
            self.driver.destroy(insid)

    def _bench(self, op: str) -> float:
        """One pass of ``/cgi-bin/blockbench``: the seconds the guest measured, checked against its byte count and
        against the request's own time on the host (the guest's clock cannot have seen more time than that)."""
        started = time.perf_counter()
        response = self._get("/cgi-bin/blockbench", timeout=GUEST_PASS_SECONDS, serial=self.target.volume_id, op=op,
                             mb=self.mb)
        waited = time.perf_counter() - started
        if not self._ok(response):
            raise SystemExit(f"the guest's blockbench {op} failed: {response is not None and response.text}")
        answer = dict(field.split("=", 1) for field in response.text.split() if "=" in field)
        if answer.get("op") != op or answer.get("bytes") != str(self.amount):
            raise SystemExit(f"the guest's blockbench {op} moved other than {self.amount} bytes: {response.text}")
        seconds = int(answer["microseconds"]) / 1e6
        if not 0 < seconds <= waited:
            raise SystemExit(f"the guest says its {op} took {seconds} s, the request took {waited:.3f} s")
        return seconds

    def _get(self, path: str, timeout: float = 120, **params: str | int) -> requests.Response | None:
        try:
            return requests.get(f"http://127.0.0.1:{self.http_port}{path}", params=params, timeout=timeout)
        except requests.RequestException:
            return None

    @staticmethod
    def _ok(response: requests.Response | None) -> bool:
        return response is not None and response.status_code == 200

    def _wait(self, check, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.insid}: no {what} within {timeout:.0f} s")
            time.sleep(0.5)


class HttpFile:
    """A file of ``size`` bytes at ``url``: ``put`` it there and ``get`` it back, each timed."""

    def __init__(self, url: str, size: int, session: requests.Session | None = None) -> None:
        self.url, self.size = url, size
        self.session = session or requests.Session()

    def put(self, source: Path) -> float:
        """Upload ``source`` streamed from the open file, with its Content-Length: a chunked upload of exactly
        1 GiB is refused (413) by the host's web server, which counts the chunks' framing against its limit of
        1 GiB a body (``daemons.host.web_server``, walrus's ``MAX_PUT_BYTES``)."""
        started = time.perf_counter()
        with source.open("rb") as data:
            response = self.session.put(self.url, data=data, timeout=1800)
        elapsed = time.perf_counter() - started
        if response.status_code not in (201, 204):
            raise SystemExit(f"PUT {self.url} answered {response.status_code}: {response.text[:300]}")
        return elapsed

    def get(self, destination: Path) -> float:
        started = time.perf_counter()
        written = 0
        with self.session.get(self.url, stream=True, timeout=1800) as response, destination.open("wb") as data:
            if response.status_code != 200:
                raise SystemExit(f"GET {self.url} answered {response.status_code}")
            for piece in response.iter_content(DAV_PIECE):
                data.write(piece)
                written += len(piece)
        elapsed = time.perf_counter() - started
        if written != self.size:
            raise SystemExit(f"GET {self.url} gave {written} bytes of {self.size}")
        return elapsed



class DavShare(HttpFile):
    """A live host with the CLC, a CC and the SC, and an account's WebDAV home."""

    def __init__(self, workdir: Path, size: int) -> None:
        quota_mb = size // MiB + 64
        self.host = RoleProcess(workdir, "dav", "clc,cc,sc",
                                {"sc": {"dav_quota_mb": str(quota_mb), "iscsi_listen": f"127.0.0.1:{free_port()}",
                                        "tgt_control_port": str(free_tgt_control_port())}})
        self.host.start().wait_listening()
        admin = ConsoleClient(self.host.url, timeout=120)
        admin.post("/clc/api/1.0/ownergroups/", {"path": "edu.bench", "name": "edu.bench", "kind": "school"})
        admin.post("/clc/api/1.0/accounts/", {"username": "bencher", "owner_group": "edu.bench", "role": "poweruser",
                                              "password": DAV_PASSWORD})
        session = requests.Session()
        session.auth = ("bencher", DAV_PASSWORD)
        super().__init__(f"{self.host.url}/sc/dav/home/bencher/big.bin", size, session)

    def close(self) -> None:
        self.host.stop()


class BareHttp(HttpFile):
    """``bench/bare_http.py`` in a process of its own: the same web server without WebDAV, the ceiling."""

    def __init__(self, folder: Path, size: int) -> None:
        folder.mkdir(parents=True)
        port = free_port()
        self.process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "bare_http.py"), str(port),
                                         str(folder)])
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("bench/bare_http.py did not listen within 30 s") from None
                time.sleep(0.2)
        super().__init__(f"http://127.0.0.1:{port}/big", size)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def make_file(path: Path, size: int) -> str:
    """A file of ``size`` bytes (every block written: no holes for ``cp`` to skip); its sha256."""
    digest = hashlib.sha256()
    block = os.urandom(DAV_PIECE)
    with path.open("wb") as data:
        for index in range(size // DAV_PIECE):
            piece = index.to_bytes(8, "big") + block[8:]
            digest.update(piece)
            data.write(piece)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while piece := data.read(DAV_PIECE):
            digest.update(piece)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=512, help="the iSCSI/dd volume (default 512)")
    parser.add_argument("--chunk-mb", type=int, default=64, help="qemu-io command and dd block size (default 64)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--guest-mb", type=int, help=f"the guest's volume (1 to {GUEST_MAX_MB}; default --size-mb)")
    parser.add_argument("--dav-mb", type=int, default=1024, help="the WebDAV and cp file (default 1024)")
    parser.add_argument("--no-guest", action="store_true", help="skip the guest's side")
    parser.add_argument("--no-dav", action="store_true", help="skip WebDAV and cp")
    options = parser.parse_args()
    options.guest_mb = options.guest_mb or min(options.size_mb, GUEST_MAX_MB)
    if not 1 <= options.guest_mb <= GUEST_MAX_MB:
        parser.error(f"--guest-mb must be from 1 to {GUEST_MAX_MB}")
    size, chunk = options.size_mb * MiB, options.chunk_mb * MiB
    call_command("migrate", verbosity=0)
    create_volume(size=size, volume_id=BENCH_VOLUME)
    path = volume_path(BENCH_VOLUME)
    target = export_volume(BENCH_VOLUME, NODE)
    secret_file = DATA / "chap.secret"
    secret_file.write_text(target.chap_secret)
    writes = [f"write -P 0x{n % 250 + 1:02x} {n * chunk} {chunk}" for n in range(size // chunk)] + ["flush"]
    reads = [f"read {n * chunk} {chunk}" for n in range(size // chunk)]
    block, count = f"bs={options.chunk_mb}M", f"count={size // chunk}"
    figures: dict[str, list[float]] = {}
    guest = dav = bare = None
    try:
        if not options.no_guest:
            accelerator = detect_accelerator()
            print(f"guest: QEMU with {accelerator.name.upper()} ({accelerator.reason})")
            create_volume(size=options.guest_mb * MiB, volume_id=GUEST_VOLUME)
            guest = GuestDisk(DATA / "vms", build_test_image(), export_volume(GUEST_VOLUME, NODE),
                              volume_path(GUEST_VOLUME), options.guest_mb)
            print(f"guest: booted and attached {GUEST_VOLUME} in {guest.boot_and_attach():.0f} s; it writes and "
                  f"reads its {options.guest_mb} MiB whole a round with dd bs=1M, timed on its own clock")
        if not options.no_dav:
            dav = DavShare(DATA / "dav", options.dav_mb * MiB)
            bare = BareHttp(DATA / "bare", options.dav_mb * MiB)
            source = DATA / "dav-source.bin"
            sent = make_file(source, options.dav_mb * MiB)
            print(f"WebDAV: host {dav.host.url} (clc, cc, sc) ready, {options.dav_mb} MiB file made")
        for round_number in range(1, options.rounds + 1):
            taken = {"iscsi write": qemu_io(target, secret_file, writes),
                     "dd write": run(["dd", "if=/dev/zero", f"of={path}", block, count, "conv=notrunc,fdatasync"])}
            moved = {"iscsi write": size, "dd write": size}
            if guest:
                taken["guest write"] = guest.write()
                moved["guest write"] = guest.amount
            if dav:
                copy, fetched = DATA / "cp-copy.bin", DATA / "dav-fetched.bin"
                taken["dav put"] = dav.put(source)
                taken["cp"] = run(["cp", str(source), str(copy)])
                taken["dav get"] = dav.get(fetched)
                if sha256_of(fetched) != sent:
                    raise SystemExit("the file WebDAV gave back differs from the one sent")
                fetched.unlink()
                taken["http put"] = bare.put(source)
                taken["http get"] = bare.get(fetched)
                copy.unlink()
                fetched.unlink()
                moved |= dict.fromkeys(("dav put", "cp", "dav get", "http put", "http get"), options.dav_mb * MiB)
            taken |= {"iscsi read": qemu_io(target, secret_file, reads),
                      "dd read": run(["dd", f"if={path}", "of=/dev/null", block, count])}
            moved |= {"iscsi read": size, "dd read": size}
            if guest:
                taken["guest read"] = guest.read()
                moved["guest read"] = guest.amount
            rates = {way: moved[way] / MiB / seconds for way, seconds in taken.items()}
            for way, rate in rates.items():
                figures.setdefault(way, []).append(rate)
            print(f"round {round_number} ({load()}): " + ", ".join(f"{way} {figure(rate)} MB/s"
                                                                     for way, rate in rates.items()))
    finally:
        if guest:
            guest.close()
        if dav:
            dav.close()
        if bare:
            bare.close()
        target_server().stop()
        shutil.rmtree(DATA, ignore_errors=True)
    report(options, {way: statistics.median(values) for way, values in figures.items()})


def figure(rate: float) -> str:
    """MB/s to three significant digits below 100, so small figures are not rounded to nothing."""
    return f"{rate:.0f}" if rate >= 100 else f"{rate:.3g}"


def report(options: argparse.Namespace, medians: dict[str, float]) -> None:
    print(f"\nmedians of {options.rounds} rounds (MB/s = MiB/s), {load()} at the end:")
    amounts = {"iscsi": f"{options.size_mb} MiB volume", "dd": f"{options.size_mb} MiB volume",
               "guest": f"{options.guest_mb} MiB volume, dd in the guest", "dav": f"{options.dav_mb} MiB file",
               "cp": f"{options.dav_mb} MiB file", "http": f"{options.dav_mb} MiB file, bare waitress app"}
    for way, value in medians.items():
        print(f"  {way:12s} {figure(value):>10s}   ({amounts[way.split()[0]]})")
    for kind in ("write", "read"):
        line = f"  {kind}: iSCSI/dd {medians[f'iscsi {kind}'] / medians[f'dd {kind}']:.3f}"
        if f"guest {kind}" in medians:
            line += (f", guest/iSCSI {medians[f'guest {kind}'] / medians[f'iscsi {kind}']:.3f}"
                     f", guest/dd {medians[f'guest {kind}'] / medians[f'dd {kind}']:.3f}")
        print(line)
    if "cp" in medians:
        put, get = medians["dav put"] / medians["cp"], medians["dav get"] / medians["cp"]
        met = "met" if min(put, get) >= 0.5 else "NOT met"
        print(f"  WebDAV PUT/cp {put:.2f}, GET/cp {get:.2f}: the goal of 0.5 of cp is {met}")
        bare_put, bare_get = medians["http put"] / medians["cp"], medians["http get"] / medians["cp"]
        print(f"  the web server's ceiling: bare PUT/cp {bare_put:.2f}, GET/cp {bare_get:.2f}; WebDAV/bare PUT "
              f"{medians['dav put'] / medians['http put']:.2f}, GET {medians['dav get'] / medians['http get']:.2f}")


if __name__ == "__main__":
    main()
