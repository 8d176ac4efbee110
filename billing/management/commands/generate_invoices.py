"""`manage.py generate_invoices --month YYYY-MM [--member NAME] [--dry-run] [--draft] [--force]`.

Thin: parses arguments, calls `statement_generate_month`, prints a progress bar and a
summary table with totals. Exits non-zero with a clear message on bad input.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.services import BillingError, MonthRunResult, statement_generate_month

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Issue the statements and the overview of one month (a new revision only if the inputs changed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--month", required=True, help="the billed month, YYYY-MM (UTC)")
        parser.add_argument("--member", default=None, help="only this member (key or Details.Name)")
        parser.add_argument("--dry-run", action="store_true", help="compute and print; write nothing")
        parser.add_argument("--draft", action="store_true", help="allow a month that has not ended (draft)")
        parser.add_argument("--force", action="store_true", help="write a new revision even if nothing changed")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = statement_generate_month(
                month=options["month"],
                member=options["member"],
                dry_run=options["dry_run"],
                draft=options["draft"],
                force=options["force"],
                progress=self._progress,
            )
        except BillingError as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:  # the work dir: full, read-only, gone
            raise CommandError(f"the statement files could not be written: {exc}") from None
        self._summary(result)

    def _progress(self, done: int, total: int, label: str) -> None:
        # On stderr, so that stdout stays a clean table for scripts.
        filled = BAR_WIDTH * done // max(total, 1)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        end = "\n" if done >= total and label == "overview" else ""
        self.stderr.write(f"\r[{bar}] {done}/{total} {label[:40]:<40}", ending=end)
        self.stderr.flush()

    def _summary(self, result: MonthRunResult) -> None:
        mode = "dry run" if result.dry_run else ("draft" if result.draft else "issued")
        postdates = " (config postdates the month)" if result.config_postdates_month else ""
        self.stdout.write(f"{result.month} {mode}, config snapshot #{result.config_snapshot_id}{postdates}")
        header = f"{'member':<24} {'number':<17} {'rev':>3} {'action':<10} {'svc':>3} {'miss':>4} {'base':>12} {'credit':>10} {'billed':>12}"
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for o in result.statements:
            self.stdout.write(
                f"{o.member_key[:24]:<24} {o.number or '-':<17} {o.revision:>3} {o.action:<10} {o.services:>3} "
                f"{o.services_missing_sla:>4} {o.base:>12} {o.credit:>10} {o.billed:>12}"
            )
        self.stdout.write("-" * len(header))
        self.stdout.write(
            f"{'TOTAL':<24} {'':<17} {'':>3} {'':<10} {sum(o.services for o in result.statements):>3} "
            f"{sum(o.services_missing_sla for o in result.statements):>4} {result.base:>12} {result.credit:>10} {result.billed:>12}"
        )
        for key in result.inactive_members:
            self.stdout.write(f"inactive (no statement, $0): {key}")
        overview = result.overview
        self.stdout.write(
            f"overview: {result.overview_action}" + (f" (revision {overview.revision})" if overview is not None else "")
        )
        if result.overview_stale_members:
            self.stdout.write(
                self.style.WARNING(
                    "warning: the overview was not re-issued, so its totals no longer match the statements: "
                    f"the statements of {', '.join(result.overview_stale_members)} are out of date too; "
                    f"run generate_invoices --month {result.month} without --member"
                )
            )
        for problem in result.problems:
            self.stdout.write(self.style.WARNING(f"problem: {problem}"))
        for failure in result.pdf_failures:
            self.stdout.write(self.style.ERROR(f"PDF failed: {failure}"))
        if result.files_written:
            self.stdout.write(f"files written: {len(result.files_written)}")
