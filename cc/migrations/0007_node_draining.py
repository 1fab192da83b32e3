from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('cc', '0006_run_sent'),
    ]

    operations = [
        migrations.AddField(
            model_name='clusternode',
            name='draining',
            field=models.BooleanField(default=False, help_text='being removed (the CLC said so): placed on no more'),
        ),
    ]
