# The issued PDF's sha256 on statements and overviews (a superseded PDF is kept as issued and
# stamped by an appended update), and the daily cost summary's lock row.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0002_statementline_service_outage_ids"),
    ]

    operations = [
        migrations.CreateModel(
            name="CostSummaryRun",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("day", models.DateField(unique=True)),
                ("lock_token", models.CharField(blank=True, default="", max_length=64)),
                ("locked_at", models.DateTimeField(blank=True, null=True)),
                (
                    "locked_by",
                    models.CharField(blank=True, default="", help_text="host/pid of the holder", max_length=255),
                ),
                ("last_started_at", models.DateTimeField(blank=True, null=True)),
                ("last_finished_at", models.DateTimeField(blank=True, null=True)),
                ("last_outcome", models.CharField(blank=True, default="", max_length=32)),
                ("last_error", models.TextField(blank=True, default="")),
                ("runs", models.PositiveIntegerField(default=0)),
            ],
            options={
                "db_table": "billing_cost_summary_run",
                "ordering": ["-day"],
            },
        ),
        migrations.AddField(
            model_name="monthlyoverview",
            name="pdf_sha256",
            field=models.CharField(blank=True, default="", help_text="sha256 of the PDF as issued.", max_length=64),
        ),
        migrations.AddField(
            model_name="statement",
            name="pdf_sha256",
            field=models.CharField(blank=True, default="", help_text="sha256 of the PDF as issued.", max_length=64),
        ),
    ]
