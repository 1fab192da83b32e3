"""Volumes and their snapshots (issue 16): records of their own, ruled as a new resource type, ``volume``, with every
existing group's volume permissions derived from what it may do to instances."""

import django.core.validators
import django.db.models.deletion
import luhyadb.models
from django.conf import settings
from django.db import migrations, models

ACTIONS = ("read", "write", "execute", "create", "delete")


def _volumes_as_instances(apps, schema_editor):
    """A group whose people may make instances (teachers, schools) gets volume permissions equal to its instance
    permissions: volumes are the disks of their virtual servers. A class's students get none, as the kinds' presets
    (``clc.services.ownergroups.KINDS``) say for new groups."""
    permission = apps.get_model("luhyadb", "OwnerGroupPermission")
    for row in permission.objects.filter(resource_type="instance", create=True):
        permission.objects.get_or_create(owner_group_id=row.owner_group_id, resource_type="volume",
                                         defaults={action: getattr(row, action) for action in ACTIONS})


class Migration(migrations.Migration):

    dependencies = [
        ('luhyadb', '0015_file_shares'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='ownergrouppermission',
            name='resource_type',
            field=models.CharField(choices=[('host', 'Host'), ('server', 'Server'), ('image', 'Image'), ('instance', 'Instance'), ('task', 'Task'), ('account', 'Account'), ('ownergroup', 'Owner-group'), ('vmtype', 'VM type'), ('network', 'Cluster network'), ('pool', 'Desktop pool'), ('share', 'File share'), ('volume', 'Volume')], max_length=20),
        ),
        migrations.CreateModel(
            name='Volume',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('volume_id', models.CharField(max_length=12, unique=True, validators=[luhyadb.models.validate_volume_id])),
                ('name', models.CharField(max_length=100)),
                ('size_bytes', models.BigIntegerField(help_text='bytes (a whole number of MiB)')),
                ('cluster', models.CharField(help_text='the cluster of its storage controller', max_length=64)),
                ('sc', models.CharField(help_text='the name of the storage controller keeping it', max_length=63)),
                ('state', models.CharField(choices=[('creating', 'Creating'), ('available', 'Available'), ('attaching', 'Attaching'), ('in-use', 'In use'), ('detaching', 'Detaching'), ('deleting', 'Deleting'), ('failed', 'Failed')], default='creating', max_length=10)),
                ('message', models.TextField(blank=True, help_text='why it failed, or what its storage controller last said')),
                ('progress', models.PositiveSmallIntegerField(default=100, help_text='percent made, while creating', validators=[django.core.validators.MaxValueValidator(100)])),
                ('source', models.CharField(choices=[('empty', 'Empty'), ('snapshot', 'A snapshot'), ('image', 'An image version')], default='empty', max_length=10)),
                ('image_version', models.PositiveIntegerField(default=0, help_text='the image version it was made from')),
                ('source_snapshot', models.CharField(blank=True, help_text='the snapshot it was made from', max_length=12)),
                ('device', models.CharField(blank=True, help_text='how the instance sees it, while attached', max_length=32)),
                ('personal', models.BooleanField(default=False, help_text="the holder's data disk in this cluster: attached to whichever desktop they get, kept across resets")),
                ('created', models.DateTimeField(auto_now_add=True)),
                ('updated', models.DateTimeField(auto_now=True)),
                ('image', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='volumes', to='luhyadb.image')),
                ('instance', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='volumes', to='luhyadb.instance')),
                ('owner_group', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='volumes', to='luhyadb.ownergroup')),
                ('holder', models.ForeignKey(blank=True, help_text="the person whose data disk it is (a personal volume), if anyone's", null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='personal_volumes', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ('name', 'volume_id'),
                'constraints': [models.UniqueConstraint(condition=models.Q(('personal', True)), fields=('holder', 'cluster'), name='one_personal_volume_per_person_and_cluster')],
            },
        ),
        migrations.AddField(
            model_name='desktoppool',
            name='data_disk_mb',
            field=models.PositiveIntegerField(default=0, help_text='MiB of a personal data disk for each person (0: none)', validators=[django.core.validators.MaxValueValidator(1048576)]),
        ),
        migrations.AddField(
            model_name='instance',
            name='data_disk_mb',
            field=models.PositiveIntegerField(default=0, help_text='MiB of a personal data disk for the person it is assigned to (0: none)', validators=[django.core.validators.MaxValueValidator(1048576)]),
        ),
        migrations.CreateModel(
            name='Snapshot',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('snapshot_id', models.CharField(max_length=12, unique=True, validators=[luhyadb.models.validate_snapshot_id])),
                ('size_bytes', models.BigIntegerField(help_text="bytes: the volume's size when it was taken")),
                ('state', models.CharField(choices=[('available', 'Available'), ('deleting', 'Deleting')], default='available', max_length=10)),
                ('created', models.DateTimeField(auto_now_add=True)),
                ('owner_group', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='snapshots', to='luhyadb.ownergroup')),
                ('volume', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='snapshots', to='luhyadb.volume')),
            ],
            options={
                'ordering': ('-created', 'snapshot_id'),
            },
        ),
        migrations.RunPython(_volumes_as_instances, migrations.RunPython.noop),
    ]
