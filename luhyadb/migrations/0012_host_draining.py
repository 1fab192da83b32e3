from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('luhyadb', '0011_instance_placing'),
    ]

    operations = [
        migrations.AddField(
            model_name='server',
            name='draining',
            field=models.BooleanField(default=False, help_text='a node controller being removed: its cluster places no new instance on it'),
        ),
    ]
