"""The verified file cache under concurrent use: many lookups, fetches and evictions of one image version at once, from
threads and from separate processes, never lose or corrupt a file another user relies on; a cache that cannot make
room refuses before it evicts anything."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

from luhyaapi.imagecache import CacheFull, VerifiedFileCache

IMAGE = "img-0000c001"
OTHER = "img-0000c002"
THIRD = "img-0000c003"
# The same bytes in every process (spawned workers import this module again).
DATA = random.Random(13).randbytes(64 * 1024)
SHA = hashlib.sha256(DATA).hexdigest()
ROUNDS = 150


def _never_in_use(_path: Path) -> bool:
    return False


def _put(cache: VerifiedFileCache, image_id: str, data: bytes = DATA, version: int = 1) -> Path:
    """A verified file as a finished fetch leaves it."""
    path = cache.path(image_id, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    cache.adopt(image_id, version, hashlib.sha256(data).hexdigest())
    return path


def _lookups(root: str, rounds: int) -> list[str]:
    """``rounds`` lookups of the cached image; what went wrong, if anything (run in a thread or a process)."""
    cache = VerifiedFileCache(Path(root), 10 * len(DATA))
    problems = []
    for _round in range(rounds):
        try:
            if cache.lookup(IMAGE, 1, SHA) is None:
                problems.append("not found")
        except OSError as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
    return problems


def _slow_fetch(count_file: Path):
    """A fetch that writes DATA to the destination in pieces, slowly enough that every other caller arrives while it
    runs, and records that it ran."""

    def fetch(dest: Path) -> None:
        with open(count_file, "a") as count:
            count.write(f"{os.getpid()}-{threading.get_ident()}\n")
        part = dest.with_name(dest.name + ".part")
        with open(part, "wb") as out:
            for start in range(0, len(DATA), 16 * 1024):
                out.write(DATA[start:start + 16 * 1024])
                out.flush()
                time.sleep(0.05)
        os.replace(part, dest)

    return fetch


def _use(root: str, count_file: str) -> str:
    """One launch: the verified image through ``using``, read while held; its sha256 (run in a thread or process)."""
    cache = VerifiedFileCache(Path(root), 10 * len(DATA))
    with cache.using(IMAGE, 1, SHA, len(DATA), fetch=_slow_fetch(Path(count_file)), in_use=_never_in_use) as cached:
        return hashlib.sha256(cached.path.read_bytes()).hexdigest()


def _leftovers(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()} - {"1.img", "1.img.json", "1.img.lock"}


# Bug: lookups rewrote the sidecar through one fixed temporary name, and a lookup that read it half written removed
# the image under the launches using it.

def test_lookups_from_many_threads_at_once_all_find_the_image_and_keep_it(tmp_path):
    cache = VerifiedFileCache(tmp_path, 10 * len(DATA))
    path = _put(cache, IMAGE)
    with ThreadPoolExecutor(8) as pool:
        problems = [problem for found in pool.map(_lookups, [str(tmp_path)] * 8, [ROUNDS] * 8) for problem in found]
    assert problems == []
    assert path.read_bytes() == DATA
    assert _leftovers(path.parent) == set()


def test_lookups_from_many_processes_at_once_all_find_the_image_and_keep_it(tmp_path):
    cache = VerifiedFileCache(tmp_path, 10 * len(DATA))
    path = _put(cache, IMAGE)
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        problems = [problem for found in pool.map(_lookups, [str(tmp_path)] * 4, [ROUNDS] * 4) for problem in found]
    assert problems == []
    assert path.read_bytes() == DATA
    assert _leftovers(path.parent) == set()


def test_a_half_written_sidecar_counts_as_absent_and_removes_nothing(tmp_path):
    cache = VerifiedFileCache(tmp_path, 10 * len(DATA))
    path = _put(cache, IMAGE)
    sidecar = path.with_name("1.img.json")
    sidecar.write_text(sidecar.read_text()[:17])
    assert cache.lookup(IMAGE, 1, SHA) is None
    assert path.read_bytes() == DATA


def test_a_sidecar_of_another_sha256_counts_as_absent_and_removes_nothing(tmp_path):
    cache = VerifiedFileCache(tmp_path, 10 * len(DATA))
    path = _put(cache, IMAGE)
    assert cache.lookup(IMAGE, 1, "0" * 64) is None
    assert path.read_bytes() == DATA
    assert cache.lookup(IMAGE, 1, SHA) is not None


def test_a_file_changed_on_disk_counts_as_absent_and_stays_until_a_fetcher_replaces_it(tmp_path):
    cache = VerifiedFileCache(tmp_path, 10 * len(DATA))
    path = _put(cache, IMAGE)
    with open(path, "r+b") as file:
        file.write(b"X")
    assert cache.lookup(IMAGE, 1, SHA) is None
    assert path.exists()


def test_sidecar_writes_racing_each_other_leave_one_whole_sidecar_and_no_temporary_files(tmp_path):
    cache = VerifiedFileCache(tmp_path, 10 * len(DATA))
    path = _put(cache, IMAGE)
    start = threading.Barrier(6)

    def adopt_again() -> list[str]:
        start.wait()
        problems = []
        for _round in range(ROUNDS):
            try:
                cache.adopt(IMAGE, 1, SHA)
            except OSError as exc:
                problems.append(str(exc))
        return problems

    with ThreadPoolExecutor(6) as pool:
        problems = [problem for found in pool.map(lambda _n: adopt_again(), range(6)) for problem in found]
    assert problems == []
    assert json.loads(path.with_name("1.img.json").read_text())["sha256"] == SHA
    assert _leftovers(path.parent) == set()


# One fetch per image version; everyone else waits for it and then uses that file.

def test_many_threads_using_one_missing_version_fetch_it_once_and_all_get_it(tmp_path):
    count = tmp_path / "fetches"
    count.touch()
    root = tmp_path / "cache"
    with ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(_use, [str(root)] * 8, [str(count)] * 8))
    assert digests == [SHA] * 8
    assert len(count.read_text().splitlines()) == 1


def test_many_processes_using_one_missing_version_fetch_it_once_and_all_get_it(tmp_path):
    count = tmp_path / "fetches"
    count.touch()
    root = tmp_path / "cache"
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        digests = list(pool.map(_use, [str(root)] * 4, [str(count)] * 4))
    assert digests == [SHA] * 4
    assert len(count.read_text().splitlines()) == 1


def test_when_the_fetch_fails_the_next_waiter_fetches_and_succeeds(tmp_path):
    cache = VerifiedFileCache(tmp_path, 10 * len(DATA))
    calls = []
    first_started = threading.Event()

    def fetch(dest: Path) -> None:
        calls.append(dest)
        if len(calls) == 1:
            first_started.set()
            time.sleep(0.3)
            raise OSError("the network went away")
        dest.write_bytes(DATA)

    def use() -> str:
        with cache.using(IMAGE, 1, SHA, len(DATA), fetch=fetch, in_use=_never_in_use) as cached:
            return hashlib.sha256(cached.path.read_bytes()).hexdigest()

    with ThreadPoolExecutor(2) as pool:
        failing = pool.submit(use)
        first_started.wait(5)
        waiting = pool.submit(use)
        with pytest.raises(OSError, match="network went away"):
            failing.result(10)
        assert waiting.result(10) == SHA
    assert len(calls) == 2


def test_a_fetcher_replaces_a_copy_that_changed_on_disk(tmp_path):
    cache = VerifiedFileCache(tmp_path, 10 * len(DATA))
    path = _put(cache, IMAGE)
    with open(path, "r+b") as file:
        file.write(b"X")
    with cache.using(IMAGE, 1, SHA, len(DATA), fetch=lambda dest: dest.write_bytes(DATA),
                     in_use=_never_in_use) as cached:
        assert cached.path.read_bytes() == DATA


# Eviction: never a held image, never two at once, and a refusal before anything is evicted.

def test_make_room_refuses_an_image_larger_than_the_whole_cache_before_evicting_anything(tmp_path):
    cache = VerifiedFileCache(tmp_path, 3 * len(DATA))
    kept = [_put(cache, IMAGE), _put(cache, OTHER)]
    with pytest.raises(CacheFull, match="larger than"):
        cache.make_room(3 * len(DATA) + 1, in_use=_never_in_use)
    assert all(path.read_bytes() == DATA for path in kept)


def test_make_room_refuses_before_evicting_when_images_in_use_leave_too_little_room(tmp_path):
    cache = VerifiedFileCache(tmp_path, 3 * len(DATA) + 100)
    busy, idle, other = _put(cache, IMAGE), _put(cache, OTHER), _put(cache, THIRD)
    with pytest.raises(CacheFull):
        cache.make_room(3 * len(DATA), in_use=lambda path: path in (busy, other))
    assert idle.read_bytes() == DATA


def test_make_room_skips_an_image_held_by_a_clone_in_progress(tmp_path):
    cache = VerifiedFileCache(tmp_path, 2 * len(DATA) + 100)
    cloned = _put(cache, IMAGE)
    _put(cache, OTHER)
    cache.lookup(OTHER, 1, SHA)  # used more recently than IMAGE, so IMAGE would go first
    with cache.held(IMAGE, 1):
        with pytest.raises(CacheFull):
            cache.make_room(2 * len(DATA), in_use=_never_in_use)
        assert cloned.read_bytes() == DATA
        cache.make_room(len(DATA), in_use=_never_in_use)  # room made by evicting the other one
        assert cloned.read_bytes() == DATA
        assert not cache.path(OTHER, 1).exists()
    cache.make_room(2 * len(DATA), in_use=_never_in_use)
    assert not cloned.exists()


def test_make_room_evicts_the_least_recently_used_first_and_only_what_is_needed(tmp_path):
    cache = VerifiedFileCache(tmp_path, 3 * len(DATA) + 100)
    oldest, middle, newest = _put(cache, IMAGE), _put(cache, OTHER), _put(cache, THIRD)
    for image_id in (IMAGE, OTHER, THIRD):
        time.sleep(0.01)
        cache.lookup(image_id, 1, SHA)
    cache.make_room(len(DATA), in_use=_never_in_use)
    assert (oldest.exists(), middle.exists(), newest.exists()) == (False, True, True)


def test_evictions_at_once_together_free_only_what_is_needed(tmp_path):
    cache = VerifiedFileCache(tmp_path, 4 * len(DATA))
    for image_id in (IMAGE, OTHER, THIRD, "img-0000c004"):
        _put(cache, image_id)
    start = threading.Barrier(2)

    def make_room() -> None:
        start.wait()
        # Each its own cache object, as each command of a node builds one.
        VerifiedFileCache(tmp_path, 4 * len(DATA)).make_room(len(DATA) // 2, in_use=_never_in_use)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _n: make_room(), range(2)))
    assert len(cache.entries()) == 3


def test_remove_waits_while_the_image_is_held(tmp_path):
    cache = VerifiedFileCache(tmp_path, 10 * len(DATA))
    path = _put(cache, IMAGE)
    removed = threading.Event()

    def remove() -> None:
        cache.remove(IMAGE, 1)
        removed.set()

    with cache.held(IMAGE, 1):
        remover = threading.Thread(target=remove)
        remover.start()
        assert not removed.wait(0.3)
        assert path.read_bytes() == DATA
    remover.join(5)
    assert removed.is_set() and not path.exists()


def test_a_user_waiting_while_its_image_is_evicted_then_holds_the_lock_a_new_fetcher_respects(tmp_path):
    cache = VerifiedFileCache(tmp_path, 2 * len(DATA))
    _put(cache, IMAGE)
    _put(cache, OTHER)
    cache.lookup(OTHER, 1, SHA)  # IMAGE is the least recently used: locked first, evicted with OTHER
    user_holds, user_may_leave = threading.Event(), threading.Event()
    found = []

    def user() -> None:
        with cache.held(IMAGE, 1):
            found.append(cache.lookup(IMAGE, 1, SHA))
            user_holds.set()
            user_may_leave.wait(10)

    def in_use(path: Path) -> bool:
        if path == cache.path(OTHER, 1):
            # IMAGE is locked by the eviction now: the user starts waiting on the lock file about to be deleted.
            threading.Thread(target=user, daemon=True).start()
            time.sleep(0.3)
        return False

    cache.make_room(2 * len(DATA), in_use=in_use)
    assert user_holds.wait(10)
    assert found == [None]  # evicted: the user would fetch it again
    fetcher_holds = threading.Event()

    def fetcher() -> None:
        with cache.held(IMAGE, 1, exclusive=True):
            fetcher_holds.set()

    threading.Thread(target=fetcher, daemon=True).start()
    assert not fetcher_holds.wait(0.3), "the user's lock must be on the lock file a fetcher takes now"
    user_may_leave.set()
    assert fetcher_holds.wait(10)
