"""An instance's run may wait for a cluster to take it (``Instance.placing``)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('luhyadb', '0010_instance_boot'),
    ]

    operations = [
        migrations.AddField(
            model_name='instance',
            name='asked_at',
            field=models.DateTimeField(blank=True, help_text='when a cluster was last asked to take the waiting run', null=True),
        ),
        migrations.AddField(
            model_name='instance',
            name='placing',
            field=models.CharField(blank=True, choices=[('', 'Placed or not running'), ('queued', 'Waiting to be placed'), ('asked', 'Asked a cluster, no answer yet')], default='', help_text='while the run waits for a cluster to take it (clc.services.instances)', max_length=6),
        ),
    ]
