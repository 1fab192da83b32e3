"""The console's pages of volumes, with a real storage controller (this test server's SC role): a school's
administrator makes a volume on its form and finds it listed with its state and size, a bad size or a volume that
does not fit is named on its field and nothing is made, snapshots are taken, restored and deleted from the volume's
page, a refused delete is a message on its page (never an error page), another school's administrator finds none of
the pages, and a student has no Volumes link and may not open the form."""

from __future__ import annotations

import html
import re

import pytest

from clc.services.volumes import create_snapshot, create_volume
from clc.tests.classes import as_
from clc.tests.conftest import STORE_MB
from luhyadb.models import Snapshot, Volume

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

MIB = 2**20


def form_data(schools, **changes) -> dict:
    return {"name": "Web server data", "owner_group": schools["s1"].pk, "size_mb": 8, "cluster": "cluster1",
            "image": "", "image_version": 0} | changes


def errors_of(page: str, field: str) -> list[str]:
    """The errors shown on one field of a form (its row, up to the next row or the form's end)."""
    row = re.search(rf'id="row-{field}"(.*?)(?=id="row-|</form>)', page, re.S)
    assert row, f"no row for {field}"
    return [html.unescape(text) for text in re.findall(r'<span class="error"[^>]*>(.*?)</span>', row[1], re.S)]


def volume_of(schools) -> Volume:
    return create_volume(name="Data", owner_group=schools["s1"], size=8 * MIB)


def test_a_school_administrator_makes_a_volume_through_the_form_and_sees_it_listed(schools, store):
    head = as_(schools["head1"])
    listing = head.get("/clc/volumes/").content.decode()
    assert '<a href="/clc/volumes/">Volumes</a>' in listing  # the navigation's link
    assert 'href="/clc/volumes/new/"' in listing
    form = head.get("/clc/volumes/new/").content.decode()
    assert "edu.s2" not in form  # only owner-groups in the administrator's authority are offered
    response = head.post("/clc/volumes/new/", form_data(schools))
    volume = Volume.objects.get()
    assert (response.status_code, response["Location"]) == (302, f"/clc/volumes/{volume.volume_id}/")
    assert (volume.name, volume.owner_group, volume.size_bytes, volume.sc, volume.state) == (
        "Web server data", schools["s1"], 8 * MIB, "sc-1", "available")
    assert (store / f"{volume.volume_id}.raw").stat().st_size == 8 * MIB
    row = re.search(rf"<tr><td><a href=\"/clc/volumes/{volume.volume_id}/\">(.*?)</tr>",
                    head.get("/clc/volumes/").content.decode(), re.S)[1]
    cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", "<td>" + row, re.S)]
    assert [html.unescape(cell) for cell in cells] == ["Web server data", volume.volume_id, "edu.s1", "8.0\xa0MB",
                                                       "Available", "cluster1", "–"]


@pytest.mark.parametrize("changes, field, words", [
    ({"size_mb": 0}, "size_mb", "greater than or equal to 1"),
    ({"size_mb": -5}, "size_mb", "greater than or equal to 1"),
    ({"size_mb": STORE_MB + 1}, "size_mb", f"{STORE_MB + 1} MiB is more than the storage controller's capacity "
                                           f"of {STORE_MB} MiB"),
    ({"name": "../../etc"}, "name", "may not contain '/'"),
    ({"name": "x" * 300}, "name", "100"),
])
def test_a_bad_volume_form_shows_the_error_on_its_field_and_makes_nothing(schools, store, changes, field, words):
    response = as_(schools["head1"]).post("/clc/volumes/new/", form_data(schools, **changes))
    assert response.status_code == 200
    errors = errors_of(response.content.decode(), field)
    assert len(errors) == 1 and words in errors[0], errors
    assert not Volume.objects.exists()


def test_snapshots_are_taken_restored_and_deleted_from_the_volumes_page(schools, store):
    head = as_(schools["head1"])
    volume = volume_of(schools)
    page = f"/clc/volumes/{volume.volume_id}/"
    assert head.post(f"{page}snapshots/")["Location"] == page
    snapshot = Snapshot.objects.get()
    shown = head.get(page).content.decode()
    assert snapshot.snapshot_id in shown and f"{page}snapshots/{snapshot.snapshot_id}/restore/" in shown
    followed = head.post(f"{page}snapshots/{snapshot.snapshot_id}/restore/", follow=True).content.decode()
    assert f"restored to snapshot {snapshot.snapshot_id}" in followed
    # A volume with snapshots is not deleted: the reason is a message on its page.
    followed = head.post(f"{page}delete/", follow=True)
    assert followed.status_code == 200
    assert f"has snapshots ({snapshot.snapshot_id}); delete them first" in html.unescape(followed.content.decode())
    head.post(f"{page}snapshots/{snapshot.snapshot_id}/delete/")
    assert not Snapshot.objects.exists()
    assert volume.volume_id in head.get(f"{page}delete/").content.decode()
    assert head.post(f"{page}delete/")["Location"] == "/clc/volumes/"
    assert not Volume.objects.exists() and not (store / f"{volume.volume_id}.raw").exists()


def test_rename_on_the_volumes_page_refuses_a_bad_name(schools, store):
    head = as_(schools["head1"])
    volume = volume_of(schools)
    head.post(f"/clc/volumes/{volume.volume_id}/rename/", {"name": "Renamed"})
    volume.refresh_from_db()
    assert volume.name == "Renamed"
    followed = head.post(f"/clc/volumes/{volume.volume_id}/rename/", {"name": "a\x00b"}, follow=True)
    assert followed.status_code == 200 and "Not done" in followed.content.decode()
    volume.refresh_from_db()
    assert volume.name == "Renamed"


def test_another_school_finds_none_of_the_pages_and_a_student_none_at_all(schools, store):
    volume = volume_of(schools)
    snapshot = create_snapshot(volume)
    base = f"/clc/volumes/{volume.volume_id}/"
    head2 = as_(schools["head2"])
    for url in (base, f"{base}delete/"):
        assert head2.get(url).status_code == 404, url
    for url in (f"{base}rename/", f"{base}snapshots/", f"{base}snapshots/{snapshot.snapshot_id}/restore/",
                f"{base}snapshots/{snapshot.snapshot_id}/delete/", f"{base}delete/"):
        assert head2.post(url, {"name": "x"}).status_code == 404, url
    assert volume.volume_id not in head2.get("/clc/volumes/").content.decode()
    student = as_(schools["students"][0])
    assert 'href="/clc/volumes/"' not in student.get("/clc/password/").content.decode()
    assert student.get("/clc/volumes/new/").status_code == 403
    assert student.get(base).status_code in (403, 404)
    assert Volume.objects.filter(name="Data").count() == 1 and Snapshot.objects.count() == 1
