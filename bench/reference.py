"""The reference a benchmark compares with when the code it measured before is gone: the project's tree at an earlier
commit, unpacked from git into a temporary directory, so that before and after run side by side in one run."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def reference_tree(revision: str) -> Iterator[Path]:
    """The files of ``revision`` (as ``git archive`` gives them) in a directory removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="educloud-reference-"))
    try:
        archive = folder / "tree.tar"
        with archive.open("wb") as out:
            subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", revision], stdout=out, check=True)
        tree = folder / "tree"
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")
        archive.unlink()
        yield tree
    finally:
        shutil.rmtree(folder, ignore_errors=True)
