"""`manage.py sync_schedule`: write the code-owned celery-beat schedule (collator/schedule.py)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from collator.schedule import beat_schedule_sync


class Command(BaseCommand):
    help = "Write the code-owned periodic tasks (collator/schedule.py) as django-celery-beat rows."

    def handle(self, *args: Any, **options: Any) -> None:
        result = beat_schedule_sync()
        for label, names in (("created", result.created), ("updated", result.updated), ("deleted", result.deleted)):
            self.stdout.write(f"{label}: {', '.join(names) or '-'}")
