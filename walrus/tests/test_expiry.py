"""Abandoned uploads expire: open uploads nobody has written to for ``walrus.upload_expiry_hours`` are deleted with
their partial data, by the periodic job ``walrus.expire_uploads`` or ``manage.py expire_uploads``; uploads in use,
complete uploads and fresh ones stay."""

from __future__ import annotations

import fcntl
import io
import os
import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from daemons.roles import build_workers
from luhyaapi.config import load_config
from walrus.models import Upload
from walrus.services.store import complete_upload, expire_uploads, start_upload, upload_path, write_upload
from walrus.tasks import expire_abandoned_uploads

pytestmark = [pytest.mark.database, pytest.mark.django_db]

IMAGE = "img-0000000a"
DAY = 24 * 3600


def idle_for(upload_id: str, hours: float) -> None:
    Upload.objects.filter(upload_id=upload_id).update(updated=timezone.now() - timedelta(hours=hours))


def open_upload(data: bytes = b"partial data") -> str:
    upload = start_upload(IMAGE, 1000)
    write_upload(upload.upload_id, 0, len(data), io.BytesIO(data).read)
    return upload.upload_id


def test_an_upload_idle_past_the_limit_is_deleted_with_its_partial_data():
    old, fresh = open_upload(), open_upload()
    idle_for(old, 25)
    idle_for(fresh, 23)
    assert expire_uploads(DAY) == [old]
    assert not Upload.objects.filter(upload_id=old).exists()
    assert not upload_path(old).exists()
    assert upload_path(fresh).read_bytes() == b"partial data"
    assert Upload.objects.get(upload_id=fresh).state == "open"


def test_writing_to_an_upload_keeps_it_alive():
    upload_id = open_upload(b"x" * 10)
    idle_for(upload_id, 30)
    write_upload(upload_id, 10, 5, io.BytesIO(b"y" * 5).read)
    assert expire_uploads(DAY) == []
    assert upload_path(upload_id).read_bytes() == b"x" * 10 + b"y" * 5


def test_an_upload_being_written_right_now_is_never_expired():
    upload_id = open_upload()
    idle_for(upload_id, 48)
    writer = os.open(upload_path(upload_id), os.O_RDWR)
    try:
        fcntl.flock(writer, fcntl.LOCK_EX)  # as write_upload holds it while a body arrives
        assert expire_uploads(DAY) == []
    finally:
        os.close(writer)
    assert upload_path(upload_id).exists()
    assert expire_uploads(DAY) == [upload_id]


def test_complete_uploads_are_kept_they_hold_no_data_and_keep_version_numbers():
    upload = start_upload(IMAGE, 4)
    write_upload(upload.upload_id, 0, 4, io.BytesIO(b"disk").read)
    complete_upload(upload.upload_id)
    idle_for(upload.upload_id, 1000)
    assert expire_uploads(DAY) == []
    assert Upload.objects.get(upload_id=upload.upload_id).state == "complete"


def test_an_open_upload_whose_partial_file_is_gone_is_forgotten():
    upload_id = open_upload()
    upload_path(upload_id).unlink()
    idle_for(upload_id, 25)
    assert expire_uploads(DAY) == [upload_id]
    assert not Upload.objects.exists()


def test_old_partial_files_no_upload_owns_are_removed(store):
    orphan, recent = store / "uploads" / "upl-0000dead.part", store / "uploads" / "upl-0000beef.part"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left by a crash")
    recent.write_bytes(b"an upload being started")
    os.utime(orphan, (time.time() - 2 * DAY, time.time() - 2 * DAY))
    assert expire_uploads(DAY) == []
    assert not orphan.exists()
    assert recent.exists()


def test_the_command_expires_with_the_configured_or_given_limit(settings, capsys):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, upload_expiry_seconds=2 * DAY)
    day_old, week_old = open_upload(), open_upload()
    idle_for(day_old, 25)
    idle_for(week_old, 24 * 7)
    call_command("expire_uploads")
    assert capsys.readouterr().out.strip() == f"1 upload(s) expired: {week_old}"
    call_command("expire_uploads", "--hours", "12")
    assert capsys.readouterr().out.strip() == f"1 upload(s) expired: {day_old}"
    assert not Upload.objects.exists()


def test_the_periodic_job_expires_with_the_hosts_setting(settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, upload_expiry_seconds=2 * DAY)
    day_old, week_old = open_upload(), open_upload()
    idle_for(day_old, 25)
    idle_for(week_old, 24 * 7)
    assert expire_abandoned_uploads.apply().result == [week_old]
    assert list(Upload.objects.values_list("upload_id", flat=True)) == [day_old]


def test_a_walrus_host_has_a_worker_for_its_jobs_queue(tmp_path):
    config = load_config({"EDUCLOUD_HOST_NAME": "wal-1", "EDUCLOUD_ROLES": "walrus", "EDUCLOUD_HOST_DATA_DIR":
                          str(tmp_path), "EDUCLOUD_CLOUD_CLC_URL": "http://10.0.0.1:8000",
                          "EDUCLOUD_HOST_PEER_CONFIG_DIR": "/nonexistent", "EDUCLOUD_WALRUS_UPLOAD_EXPIRY_HOURS": "2"})
    assert config.upload_expiry_seconds == 7200
    workers, _heartbeats = build_workers(config, threading.Event())
    assert "celery-worker" in [worker.name for worker in workers]
