"""The portal's console page of a desktop from a pool: a non-persistent pool's desktop goes back to its pool when it
stops, so its page carries what to show then (the pool's Get a desktop) instead of "no longer yours"; a persistent
pool's desktop stays its person's and its page has no such part."""

from __future__ import annotations

import pytest

from clc.services.pools import create_pool
from clc.tests.classes import CLASS, as_, report
from luhyadb.models import Instance

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]


def console_page_of_a_claimed_desktop(schools, persistent: bool) -> tuple[str, Instance]:
    pool = create_pool(name="Class 1 desktops", image=schools["images"]["edu.s1"], vm_type=schools["tiny"],
                       owner_group=schools["c1"], max_size=CLASS, persistent=persistent)
    student = schools["students"][0]
    claimed = as_(student).post(f"/clc/api/1.0/pools/{pool.pool_id}/claim/", content_type="application/json")
    desktop = Instance.objects.get(instance_id=claimed.json()["instance_id"])
    report(desktop, "running")
    return as_(student).get(f"/portal/desktops/{desktop.instance_id}/").content.decode(), desktop


def test_a_non_persistent_pool_desktops_page_offers_the_pools_next_desktop_for_when_it_went_back(schools):
    page, desktop = console_page_of_a_claimed_desktop(schools, persistent=False)
    returned = page[page.index('<div id="returned"'):]
    opening, returned = returned[:returned.index(">")], returned[:returned.index("</div>")]
    assert " hidden" in opening  # shown by the page's script once the desktop is gone
    assert "went back to Class 1 desktops" in returned
    assert f'action="/portal/pools/{desktop.pool.pool_id}/claim/"' in returned


def test_a_persistent_pool_desktops_page_has_no_going_back_part(schools):
    page, _desktop = console_page_of_a_claimed_desktop(schools, persistent=True)
    assert 'id="returned"' not in page and 'id="gone"' in page
