"""Remember on the row that its ONLINE went out, so a restart can send the ones that did not.

Rows closed before this column existed may or may not have had their ONLINE: they are
marked `untracked` so that the first sweep after the upgrade does not announce them again.
"""

from typing import Any

from django.db import migrations, models

UNTRACKED = "untracked"


def mark_closed_rows_untracked(apps: Any, schema_editor: Any) -> None:
    MemberEvent = apps.get_model("metrics", "MemberEvent")
    MemberEvent.objects.filter(end_time__isnull=False, matrix_event_id__isnull=False).update(
        matrix_online_event_id=UNTRACKED
    )


class Migration(migrations.Migration):
    dependencies = [
        ("metrics", "0007_verbose_names"),
    ]

    operations = [
        migrations.AddField(
            model_name="memberevent",
            name="matrix_online_event_id",
            field=models.CharField(blank=True, max_length=255, null=True),
        ),
        migrations.AddIndex(
            model_name="memberevent",
            index=models.Index(fields=["end_time"], name="member_events_end_idx"),
        ),
        migrations.RunPython(mark_closed_rows_untracked, migrations.RunPython.noop, elidable=True),
    ]
