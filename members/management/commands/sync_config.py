"""`manage.py sync_config`: load System.ConfigUrls into the registry now (members/services.py)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from members.services import config_sync


class Command(BaseCommand):
    help = "Fetch the IBP config files (System.ConfigUrls) and apply them to the registry if they changed."

    def handle(self, *args: Any, **options: Any) -> None:
        result = config_sync()
        if not result.ok:
            raise CommandError(f"config sync failed, the registry is unchanged: {result.error}")
        counts = result.counts
        snapshot = result.snapshot.pk if result.snapshot else "-"
        self.stdout.write(
            f"{result.status} (snapshot #{snapshot}): {counts.get('members', 0)} members, "
            f"{counts.get('services', 0)} services ({counts.get('active_services', 0)} active), "
            f"{counts.get('regions', 0)} price regions, {counts.get('assignments', 0)} assignments"
        )
        for warning in result.warnings:
            self.stdout.write(self.style.WARNING(f"warning: {warning}"))
