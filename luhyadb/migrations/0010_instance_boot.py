from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('luhyadb', '0009_login_throttle'),
    ]

    operations = [
        migrations.AddField(
            model_name='instance',
            name='answering',
            field=models.BooleanField(default=True, help_text="false: running, but its guest showed no sign of life within the node's time limit"),
        ),
    ]
