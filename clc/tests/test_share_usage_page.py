"""The console's File shares page: the homes and owner-group shares of a real SC (this test server's, its WebDAV
folders written where WebDAV keeps them) with what each holds, as far as the person may see: a school's
administrator their school's shares and homes, never the other school's; a student their class's share and their
own home; an SC that does not answer named, not a 500."""

from __future__ import annotations

import pytest

from clc.tests.classes import as_
from luhyadb.models import Server

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

MIB = 2**20


def _fill(store, area: str, owner: str, size: int) -> None:
    folder = store.parent / "dav" / area / owner
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "work.bin").write_bytes(b"x" * size)


@pytest.fixture
def shares(store, schools):
    student = schools["students"][0].username
    _fill(store, "groups", "edu.s1.c1", 3 * MIB)
    _fill(store, "groups", "edu.s2", 2 * MIB)
    _fill(store, "home", student, MIB)
    _fill(store, "home", schools["teacher2"].username, MIB // 2)
    return schools


def _rows(client) -> str:
    response = client.get("/clc/shares/")
    assert response.status_code == 200
    return response.content.decode().split('<table id="shares">')[1]


def test_a_school_administrator_sees_their_schools_shares_and_homes_with_what_they_hold(shares):
    rows = _rows(as_(shares["head1"]))
    assert "edu.s1.c1" in rows and "3.0\xa0MB" in rows and shares["students"][0].username in rows
    assert "edu.s2" not in rows and shares["teacher2"].username not in rows, "another school's shares"
    assert rows.index("edu.s1.c1") < rows.index(shares["students"][0].username), "the fullest first"


def test_a_student_sees_their_class_share_and_their_own_home_only(shares):
    student = shares["students"][0]
    rows = _rows(as_(student))
    assert "edu.s1.c1" in rows and student.username in rows
    assert "edu.s2" not in rows and shares["teacher2"].username not in rows


def test_the_other_schools_administrator_sees_only_theirs(shares):
    rows = _rows(as_(shares["head2"]))
    assert "edu.s2" in rows and shares["teacher2"].username in rows
    assert "edu.s1.c1" not in rows and shares["students"][0].username not in rows


def test_an_sc_that_does_not_answer_is_named_and_the_others_still_listed(shares):
    Server.objects.create(role="sc", name="sc-gone", ip="127.0.0.1", cluster="cluster2", state="online",
                          api_url="http://127.0.0.1:9/")
    response = as_(shares["head1"]).get("/clc/shares/")
    page = response.content.decode()
    assert response.status_code == 200 and "sc-gone did not answer" in page and "edu.s1.c1" in page
