"""The indefinite article our messages put before the names of kinds, types and roles."""

import pytest

from luhyaapi.wording import with_article


@pytest.mark.parametrize(("word", "phrase"), [
    ("instance", "an instance"), ("image", "an image"), ("account", "an account"), ("ownergroup", "an ownergroup"),
    ("owner-group", "an owner-group"), ("insstatus", "an insstatus"), ("upload", "an upload"),
    ("unassigned desktop", "an unassigned desktop"), ("Instance", "an Instance"),
    ("host", "a host"), ("server", "a server"), ("task", "a task"), ("taskstatus", "a taskstatus"),
    ("volume", "a volume"), ("VM type", "a VM type"), ("user", "a user"), ("unit", "a unit"),
    ("cluster network", "a cluster network"),
])
def test_a_word_gets_an_before_a_vowel_sound_and_a_before_a_consonant_sound(word, phrase):
    assert with_article(word) == phrase

