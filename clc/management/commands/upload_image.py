"""``manage.py upload_image FILE``: register an image (or a new version of one) and upload its file to walrus,
with a progress bar; an interrupted upload resumes with ``--image ID --resume UPLOAD_ID``."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from clc.management.progress import ProgressBar
from clc.services.images import ImageError, create_image, finish_upload, start_upload, walrus_client
from luhyaapi.ids import InvalidId, validate_id
from luhyaapi.transfer import TransferError, upload_file
from luhyaapi.validators import InvalidValue, validate_display_name
from luhyadb.choices import ArchChoices, OsTypeChoices, UsageChoices
from luhyadb.models import Image, OwnerGroup


class Command(BaseCommand):
    help = "Upload an image file to walrus as a new image, or as a new version of --image, showing progress."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="the disk file (qcow2, vdi, vmdk or raw)")
        parser.add_argument("--name", help="name of the new image (default: the file name)")
        parser.add_argument("--os-type", default=OsTypeChoices.LINUX, choices=OsTypeChoices.values)
        parser.add_argument("--arch", type=int, default=ArchChoices.BITS64, choices=ArchChoices.values)
        parser.add_argument("--usage", default=UsageChoices.DESKTOP, choices=UsageChoices.values)
        parser.add_argument("--owner-group", default="edu", help="owner-group path (default: edu)")
        parser.add_argument("--description", default="")
        parser.add_argument("--image", help="add a new version to this existing image id instead")
        parser.add_argument("--resume", metavar="UPLOAD_ID", help="continue this interrupted upload")

    def handle(self, *args, file: Path, image: str | None, resume: str | None, **options):
        if not file.is_file():
            raise CommandError(f"{file}: no such file")
        size = file.stat().st_size
        if size == 0:
            raise CommandError(f"{file}: the file is empty")
        if resume and not image:
            raise CommandError("--resume needs --image, the image the interrupted upload belongs to")
        try:
            if resume:
                validate_id(resume, "upload")
            record = self._image(file, image, options)
            upload_id = resume or start_upload(record, size)["upload_id"]
            self.stderr.write(f"uploading {file} ({size} bytes) to {record.image_id} as upload {upload_id}; "
                              f"if it is interrupted, run again with --image {record.image_id} --resume {upload_id}")
            client = walrus_client()
            upload_file(client.base_url, client.key, file, record.image_id, upload_id=upload_id,
                        progress=ProgressBar(file.name, write=self._write_progress))
            version = finish_upload(record, upload_id)
        except (ImageError, TransferError, InvalidId, InvalidValue, DatabaseError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{record.image_id} version {version.number} ({version.label}): {version.size_bytes} bytes, "
                          f"{version.format}, sha256 {version.sha256}")

    def _write_progress(self, text: str) -> None:
        self.stderr.write(text, ending="")
        self.stderr.flush()

    def _image(self, file: Path, image_id: str | None, options: dict) -> Image:
        if image_id:
            validate_id(image_id, "image")
            found = Image.objects.filter(image_id=image_id).first()
            if found is None:
                raise CommandError(f"no image {image_id}")
            return found
        owner = OwnerGroup.objects.filter(path=options["owner_group"]).first()
        if owner is None:
            raise CommandError(f"no owner-group with path {options['owner_group']!r}")
        return create_image(name=validate_display_name(options["name"] or file.name), os_type=options["os_type"],
                            arch=options["arch"], usage=options["usage"], owner_group=owner,
                            description=options["description"])
