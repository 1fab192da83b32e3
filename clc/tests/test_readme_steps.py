"""The README's "A VM in two minutes" followed on the real console pages: every link and button it names in
**bold** is found on the page that step is on (links are followed, the form is saved), every *Field* `value` it
names is a field of the form with that value on offer, and the form saved with those values defines the instance.
A README step that names a field, button or choice the pages do not have fails here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from luhyadb.models import Image, ImageVersion, Instance, OwnerGroup
from luhyadb.services.initial_data import seed_initial_data

pytestmark = [pytest.mark.database, pytest.mark.django_db]

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "### A VM in two minutes"


@dataclass
class Step:
    text: str
    controls: list[str]  # **Link or button**, in the order named
    fields: list[tuple[str, str]]  # (*Field* label, `value`)


def readme_steps() -> list[Step]:
    """The numbered steps of the README's section (a step may go on over indented lines)."""
    text = README.read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", 1)]
    steps = []
    for match in re.finditer(r"^\d+\. (.*(?:\n {3}.*)*)", section, re.M):
        step = " ".join(line.strip() for line in match[1].splitlines())
        steps.append(Step(step, re.findall(r"\*\*([^*]+)\*\*", step),
                          re.findall(r"(?<!\*)\*([^*]+)\* `([^`]+)`", step)))
    return steps


@dataclass
class Page:
    """What a step can use on a page: links and buttons by their text, the form's fields by their label."""

    links: dict[str, str] = field(default_factory=dict)  # text -> href
    buttons: dict[str, bool] = field(default_factory=dict)  # text -> enabled
    labels: dict[str, str] = field(default_factory=dict)  # label text -> field id
    names: dict[str, str] = field(default_factory=dict)  # field id -> name
    options: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # select name -> (value, text)


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Page()
        self._open: tuple[str, dict] | None = None  # the <a>, <button>, <label> or <option> whose text is read
        self._text = ""
        self._select = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("input", "select", "textarea") and attrs.get("id"):
            self.page.names[attrs["id"]] = attrs.get("name", "")
        if tag == "select":
            self._select = attrs.get("name", "")
            self.page.options[self._select] = []
        if tag in ("a", "button", "label", "option"):
            self._open, self._text = (tag, attrs), ""

    def handle_data(self, data):
        if self._open is not None:
            self._text += data

    def handle_endtag(self, tag):
        if self._open is None or tag != self._open[0]:
            return
        text, attrs = " ".join(self._text.split()), self._open[1]
        if tag == "a":
            self.page.links.setdefault(text, attrs.get("href", ""))
        elif tag == "button":
            self.page.buttons[text] = "disabled" not in attrs
        elif tag == "label":
            self.page.labels[text.rstrip(":")] = attrs.get("for", "")
        elif tag == "option":
            self.page.options[self._select].append((attrs.get("value", ""), text))
        self._open = None


def parse(html: str) -> Page:
    parser = PageParser()
    parser.feed(html)
    return parser.page


def choose(options: list[tuple[str, str]], shown: str) -> str:
    """The value of the option shown as ``shown`` (or as ``shown`` followed by details, e.g. a VM type's size)."""
    found = [value for value, text in options if text == shown or text.startswith(shown + " ")]
    assert found, f"no choice {shown!r} among {[text for _, text in options]}"
    return found[0]


@pytest.fixture
def console(client):
    """The first administrator logged in to a cloud with the README's image uploaded."""
    seed_initial_data()
    image = Image.objects.create(image_id="img-0000abcd", name="Test VM", owner_group=OwnerGroup.objects.get(
        path="edu"), current_version=1)
    ImageVersion.objects.create(image=image, number=1, label="1.0.0", size_bytes=1024, sha256="b" * 64,
                                format="qcow2")
    client.force_login(get_user_model().objects.create_user("admin", is_staff=True, is_superuser=True))
    return client


def test_the_readme_names_its_steps_controls_and_fields():
    steps = readme_steps()
    assert len(steps) >= 3
    assert [control for step in steps for control in step.controls] == ["Instances", "New instance", "Save", "Run"]
    assert {label for step in steps for label, _ in step.fields} >= {"Name", "Kind", "Image", "VM type",
                                                                     "Owner-group"}


def fill(step: Step, page: Page, url: str) -> dict[str, str]:
    """The form data of the step's fields: each label must be a field of the page, each choice one it offers."""
    data = {}
    for label, value in step.fields:
        assert label in page.labels, f"{step.text!r}: the page at {url} has no field {label!r}: {sorted(page.labels)}"
        name = page.names[page.labels[label]]
        data[name] = choose(page.options[name], value) if name in page.options else value
    return data


def test_following_the_readmes_steps_on_the_real_pages_defines_the_vm_and_offers_run(console):
    url = "/clc/"
    response = console.get(url)
    for step in readme_steps():
        page = parse(response.content.decode())
        data = None
        for control in step.controls:
            if control in page.links:  # a link: followed
                url = page.links[control]
                response = console.get(url)
                assert response.status_code == 200, f"{step.text!r}: {control} leads to a {response.status_code}"
                page = parse(response.content.decode())
                continue
            data = fill(step, page, url) if data is None else data  # the fields are on the button's page
            assert page.buttons.get(control), f"{step.text!r}: the page at {url} has no enabled {control!r} " \
                                              f"(links {sorted(page.links)}, buttons {page.buttons})"
            if data:  # the step filled in the form: its button saves it
                response = console.post(url, data, follow=True)
                form = (response.context or {}).get("form")
                assert response.redirect_chain, f"{step.text!r}: not saved: {form.errors if form else response}"
                assert response.status_code == 200
                url = response.redirect_chain[-1][0]
        if data is None:
            fill(step, page, url)
    instance = Instance.objects.get()
    assert (instance.name, instance.kind, instance.image.name, instance.vm_type.name, instance.owner_group.path,
            instance.services) == ("Test VM 1", "vs", "Test VM", "tiny", "edu", [80])
