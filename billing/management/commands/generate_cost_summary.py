"""`manage.py generate_cost_summary`: the daily "cost by service" document, now.

celery-beat runs the same service at 00:05 UTC every day; this is for a manual run.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing.services import BillingError, cost_summary_generate


class Command(BaseCommand):
    help = "Write today's service cost summary (JSON, and the PDF when a renderer is configured)."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = cost_summary_generate()
        except BillingError as exc:
            raise CommandError(str(exc)) from None
        summary = result.summary
        self.stdout.write(
            f"cost summary {summary.day:%Y-%m-%d}: {len(summary.services)} services, "
            f"{len(summary.member_totals)} members, total ${summary.total:,.2f}"
        )
        self.stdout.write(f"  json {result.json_path}")
        self.stdout.write(f"  pdf  {result.pdf_path or '(no PDF renderer configured)'}")
        for problem in summary.problems:
            self.stdout.write(self.style.WARNING(f"  problem: {problem}"))
