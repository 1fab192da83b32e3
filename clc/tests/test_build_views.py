"""The image wizard's pages: started from an image, one page with its three steps following the task."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from luhyadb.models import Image, ImageVersion, Instance, OwnerGroup, TaskTransaction, VMType

pytestmark = [pytest.mark.database, pytest.mark.django_db]


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create(username="boss", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def image():
    group = OwnerGroup.objects.create(name="root", path="edu")
    image = Image.objects.create(image_id="img-0000abcd", name="Lab desktop", owner_group=group, current_version=1)
    ImageVersion.objects.create(image=image, number=1, label="1.0.0", size_bytes=1024, sha256="b" * 64,
                                format="qcow2")
    VMType.objects.create(name="tiny", cpus=1, memory_mb=256, disk_gb=1)
    return image


def test_the_image_page_links_to_the_wizard_once_it_has_a_file(admin_client, image):
    assert b"/clc/images/img-0000abcd/wizard/" in admin_client.get("/clc/images/img-0000abcd/").content
    Image.objects.filter(pk=image.pk).update(current_version=0)
    assert b"/wizard/" not in admin_client.get("/clc/images/img-0000abcd/").content


def test_starting_a_modify_makes_the_task_and_its_vm_and_shows_the_three_steps(admin_client, image):
    response = admin_client.post("/clc/images/img-0000abcd/wizard/", {"mode": "modify", "vm_type": "tiny"})
    task = TaskTransaction.objects.get()
    assert task.tid.startswith("img-0000abcd:img-0000abcd:ins-")
    assert response["Location"] == f"/clc/builds/{task.tid}/"
    vm = Instance.objects.get(build_tid=task.tid)
    assert (vm.instance_id, vm.persistent, vm.state) == (task.instance_id, True, "defined")
    page = admin_client.get(response["Location"]).content.decode()
    for text in ("1. Prepare", "2. Edit", "3. Submit", "builds.js", f"/clc/api/1.0/builds/{task.tid}/"):
        assert text in page
    assert '<button type="submit" data-step="prepare">' in page
    assert '<button type="submit" data-step="submit" disabled>' in page
    assert f'<a href="/portal/desktops/{vm.instance_id}/">in the browser</a>' in page  # its console page


def test_after_cancel_the_wizards_page_still_renders_without_its_vm(admin_client, image):
    admin_client.post("/clc/images/img-0000abcd/wizard/", {"mode": "modify", "vm_type": "tiny"})
    task = TaskTransaction.objects.get()
    admin_client.post(f"/clc/builds/{task.tid}/cancel/")
    response = admin_client.get(f"/clc/builds/{task.tid}/")
    assert response.status_code == 200 and "in the browser" not in response.content.decode()


def test_a_create_needs_a_valid_new_name(admin_client, image):
    page = admin_client.post("/clc/images/img-0000abcd/wizard/", {"mode": "create", "new_name": "x; rm -rf /",
                                                                   "vm_type": "tiny"})
    assert page.status_code == 200 and b"shell metacharacters" in page.content
    assert not TaskTransaction.objects.exists()
    response = admin_client.post("/clc/images/img-0000abcd/wizard/", {"mode": "create", "new_name": "Physics lab",
                                                                       "vm_type": "tiny"})
    task = TaskTransaction.objects.get()
    assert task.dst_image_id != task.src_image_id and task.runtime_option["name"] == "Physics lab"
    assert "Create <strong>Physics lab</strong>" in admin_client.get(response["Location"]).content.decode()


def test_a_step_the_state_does_not_allow_is_refused_with_a_message(admin_client, image):
    admin_client.post("/clc/images/img-0000abcd/wizard/", {"mode": "modify", "vm_type": "tiny"})
    tid = TaskTransaction.objects.get().tid
    page = admin_client.post(f"/clc/builds/{tid}/submit/", follow=True).content.decode()
    assert "Submit was refused" in page and "stop it before submitting" in page


def test_with_no_cluster_controller_prepare_says_so_on_the_page(admin_client, image):
    admin_client.post("/clc/images/img-0000abcd/wizard/", {"mode": "modify", "vm_type": "tiny"})
    tid = TaskTransaction.objects.get().tid
    page = admin_client.post(f"/clc/builds/{tid}/prepare/", follow=True).content.decode()
    assert "Prepare was refused" in page and "no online cluster controller" in page


def test_cancel_removes_the_wizards_vm_and_marks_the_task(admin_client, image):
    admin_client.post("/clc/images/img-0000abcd/wizard/", {"mode": "modify", "vm_type": "tiny"})
    task = TaskTransaction.objects.get()
    admin_client.post(f"/clc/builds/{task.tid}/cancel/")
    task.refresh_from_db()
    assert (task.phase, task.failed, task.message) == ("failed", True, "cancelled")
    assert not Instance.objects.filter(build_tid=task.tid).exists()


@pytest.mark.parametrize("path", ["/clc/builds/img-0000abcd:img-0000abcd:ins-xyz/",
                                  "/clc/builds/..%2F..%2Fetc/", "/clc/builds/img-0000abcd:img-0000abcd:ins-00000000/"])
def test_malformed_or_unknown_task_ids_are_404(admin_client, image, path):
    assert admin_client.get(path).status_code == 404


def test_the_wizard_is_for_staff_only(client, image):
    assert client.get("/clc/images/img-0000abcd/wizard/").status_code == 302
    get_user_model().objects.create_user("pupil", password="pw-pupil-123")
    client.login(username="pupil", password="pw-pupil-123")
    assert client.get("/clc/images/img-0000abcd/wizard/").status_code == 403
