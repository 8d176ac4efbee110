"""The database cache table (collator/settings.py CACHES): shared per-IP throttle counts and
the API response cache's version, for every process, with no other service.

`createcachetable` creates the table of each DatabaseCache in the settings and skips one that
exists, so this is idempotent, and does nothing when the cache is Redis.
"""

from typing import Any

from django.core.management import call_command
from django.db import migrations


def cache_table_create(apps: Any, schema_editor: Any) -> None:
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("collator", "0001_initial")]

    operations = [migrations.RunPython(cache_table_create, migrations.RunPython.noop, elidable=True)]
