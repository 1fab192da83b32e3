"""File shares (WebDAV, issue 16): a resource type of their own, ``share``, with every existing group's share
permissions derived from what it may do to instances."""

from django.db import migrations, models

ACTIONS = ("read", "write", "execute", "create", "delete")


def _shares_as_instances(apps, schema_editor):
    """A group whose people may use desktops may read its share; one whose people may change instances (teachers,
    schools) may write it too. The kinds' presets (``clc.services.ownergroups.KINDS``) say the same for new groups."""
    permission = apps.get_model("luhyadb", "OwnerGroupPermission")
    for row in permission.objects.filter(resource_type="instance"):
        grants = {"read": row.read or row.write, "write": row.write}
        if all(getattr(row, action) for action in ACTIONS):
            grants = dict.fromkeys(ACTIONS, True)
        if any(grants.values()):
            permission.objects.get_or_create(owner_group_id=row.owner_group_id, resource_type="share",
                                             defaults=grants)


class Migration(migrations.Migration):

    dependencies = [
        ('luhyadb', '0014_image_rdp_apps'),
    ]

    operations = [
        migrations.AlterField(
            model_name='ownergrouppermission',
            name='resource_type',
            field=models.CharField(choices=[('host', 'Host'), ('server', 'Server'), ('image', 'Image'), ('instance', 'Instance'), ('task', 'Task'), ('account', 'Account'), ('ownergroup', 'Owner-group'), ('vmtype', 'VM type'), ('network', 'Cluster network'), ('pool', 'Desktop pool'), ('share', 'File share')], max_length=20),
        ),
        migrations.RunPython(_shares_as_instances, migrations.RunPython.noop),
    ]
