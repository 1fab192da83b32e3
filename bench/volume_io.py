"""Volume I/O benchmark, the storage controller's side: sequential write and read MB/s of a volume through its iSCSI
export (QEMU's initiator, ``qemu-io`` on ``iscsi://``, logged in with the export's CHAP account, as a node's QEMU
does) beside ``dd`` on the SC's raw file, in the same run, interleaved in rounds so both see the same machine.

The script makes a scratch SC (its own data dir, database, tgtd on a free port of 127.0.0.1), a volume of
``--size-mb``, exports it, and per round: writes it whole through iSCSI (``write`` commands of ``--chunk-mb`` and a
``flush``, which tgt turns into an fdatasync of the file) and with ``dd conv=notrunc,fdatasync``, then reads it whole
both ways (from the page cache on both sides: the machine's caches are not dropped). It prints MB/s per way and
round, the medians and the ratios iSCSI / dd. tgtd is stopped and the data dir removed at the end. The guest's side
(a volume attached to a running VM) needs the node's attach and is not measured here. Run from the repository root:

    .venv/bin/python bench/volume_io.py
    .venv/bin/python bench/volume_io.py --size-mb 1024 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(tempfile.mkdtemp(prefix="educloud-bench-"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


os.environ.update({"EDUCLOUD_HOST_NAME": "bench-sc", "EDUCLOUD_HOST_ROLES": "sc", "EDUCLOUD_HOST_DATA_DIR": str(DATA),
                   "EDUCLOUD_CLOUD_CC_URL": "http://127.0.0.1:9/",
                   "EDUCLOUD_SC_ISCSI_LISTEN": f"127.0.0.1:{_free_port()}",
                   "EDUCLOUD_SC_TGT_CONTROL_PORT": str(random.randint(20000, 32767)),
                   "DJANGO_SETTINGS_MODULE": "educloud.settings"})

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from luhyaapi.volumes import VolumeTarget  # noqa: E402
from sc.constants import MiB  # noqa: E402
from sc.services.store import create_volume, volume_path  # noqa: E402
from sc.services.targets import export_volume, target_server  # noqa: E402


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


def dd(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--chunk-mb", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    size, chunk = options.size_mb * MiB, options.chunk_mb * MiB
    call_command("migrate", verbosity=0)
    create_volume(size=size, volume_id="vol-0000be4c")
    path = volume_path("vol-0000be4c")
    target = export_volume("vol-0000be4c", "bench-nc")
    secret_file = DATA / "chap.secret"
    secret_file.write_text(target.chap_secret)
    writes = [f"write -P 0x{n % 250 + 1:02x} {n * chunk} {chunk}" for n in range(size // chunk)] + ["flush"]
    reads = [f"read {n * chunk} {chunk}" for n in range(size // chunk)]
    figures: dict[str, list[float]] = {"iscsi write": [], "dd write": [], "iscsi read": [], "dd read": []}
    block = f"bs={options.chunk_mb}M"
    count = f"count={size // chunk}"
    try:
        for round_number in range(1, options.rounds + 1):
            taken = {
                "iscsi write": qemu_io(target, secret_file, writes),
                "dd write": dd(["dd", "if=/dev/zero", f"of={path}", block, count, "conv=notrunc,fdatasync"]),
                "iscsi read": qemu_io(target, secret_file, reads),
                "dd read": dd(["dd", f"if={path}", "of=/dev/null", block, count]),
            }
            for way, seconds in taken.items():
                figures[way].append(size / MiB / seconds)
            print(f"round {round_number}: " + ", ".join(f"{way} {size / MiB / seconds:.0f} MB/s"
                                                         for way, seconds in taken.items()))
    finally:
        target_server().stop()
        shutil.rmtree(DATA, ignore_errors=True)
    medians = {way: statistics.median(values) for way, values in figures.items()}
    print(f"\n{options.size_mb} MiB volume, {options.rounds} rounds, medians (MB/s = MiB/s):")
    for way, value in medians.items():
        print(f"  {way:12s} {value:8.0f}")
    print(f"  write iSCSI/dd {medians['iscsi write'] / medians['dd write']:.2f}, "
          f"read iSCSI/dd {medians['iscsi read'] / medians['dd read']:.2f}")


if __name__ == "__main__":
    main()
