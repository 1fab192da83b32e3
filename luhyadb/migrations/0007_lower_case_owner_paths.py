"""Owner-group paths are lower case (luhyaapi.validators.OWNER_PATH_RE): existing ones are lowered, and a cloud where
two paths differ only in case stops here with their names, for an administrator to rename one first."""

from django.db import migrations


def lower_paths(apps, schema_editor):
    OwnerGroup = apps.get_model("luhyadb", "OwnerGroup")
    seen: dict[str, str] = {}
    for path in OwnerGroup.objects.values_list("path", flat=True):
        if path.lower() in seen:
            raise RuntimeError(f"owner-groups {seen[path.lower()]!r} and {path!r} differ only in case; rename one "
                               "(paths are lower case from now on) and migrate again")
        seen[path.lower()] = path
    # Compared in Python: MariaDB's collation would find every path equal to its lower-case self.
    for group in OwnerGroup.objects.all():
        if group.path != group.path.lower():
            OwnerGroup.objects.filter(pk=group.pk).update(path=group.path.lower())


class Migration(migrations.Migration):
    dependencies = [("luhyadb", "0006_console_password")]

    operations = [migrations.RunPython(lower_paths, migrations.RunPython.noop)]
