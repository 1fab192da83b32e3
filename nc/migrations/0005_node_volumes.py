"""The node's record of the volumes attached to its instances (issue 16)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('nc', '0004_node_instance_boot'),
    ]

    operations = [
        migrations.CreateModel(
            name='NodeVolume',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('volume_id', models.CharField(max_length=12, unique=True)),
                ('target', models.JSONField(help_text='the luhyaapi.volumes.VolumeTarget of the attach command, CHAP secret included (the node logs in with it at every start)')),
                ('device', models.CharField(blank=True, help_text="the hypervisor's name of the attachment", max_length=64)),
                ('serial', models.CharField(blank=True, help_text="the disk's serial number as the guest sees it", max_length=20)),
                ('attached_at', models.DateTimeField(auto_now_add=True)),
                ('instance', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='volumes', to='nc.nodeinstance')),
            ],
            options={
                'ordering': ('volume_id',),
            },
        ),
    ]
