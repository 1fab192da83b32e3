from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('nc', '0003_node_instances'),
    ]

    operations = [
        migrations.AddField(
            model_name='nodeinstance',
            name='booted_at',
            field=models.DateTimeField(blank=True, help_text='when its VM was last started', null=True),
        ),
        migrations.AddField(
            model_name='nodeinstance',
            name='answering',
            field=models.BooleanField(default=True, help_text='false: running, but no sign of the guest in time'),
        ),
    ]
