"""`config_snapshot.last_checked_at`: when a sync last found the applied config good.

Existing applied snapshots start from the last time they were known good: their apply.
"""

from django.db import migrations, models
from django.db.models import F


def backfill(apps, schema_editor):  # type: ignore[no-untyped-def]
    snapshot = apps.get_model("members", "ConfigSnapshot")
    snapshot.objects.filter(status="applied", last_checked_at__isnull=True).update(last_checked_at=F("applied_at"))


class Migration(migrations.Migration):
    dependencies = [("members", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="configsnapshot",
            name="last_checked_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
