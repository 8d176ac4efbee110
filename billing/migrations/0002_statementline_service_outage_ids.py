# Lines keep only their own domain/endpoint outages; the statement's site outages count for
# every line and are no longer repeated per line.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [
        migrations.RenameField(model_name="statementline", old_name="outage_ids", new_name="service_outage_ids"),
    ]
