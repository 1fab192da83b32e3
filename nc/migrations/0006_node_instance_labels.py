"""The labels of a node's instance for its metrics, from its run command (issue 17)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('nc', '0005_node_volumes'),
    ]

    operations = [
        migrations.AddField(
            model_name='nodeinstance',
            name='labels',
            field=models.JSONField(blank=True, default=dict, help_text=(
                'what its run command says of it for its metrics: image_id, owner_group, monitoring '
                '(nc.services.metrics.InstanceLabels)')),
        ),
    ]
