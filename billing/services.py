"""Writes of billing: issuing a month's statements and overview, and the daily cost summary.

`statement_generate_month` is the only writer of Statement, StatementLine and
MonthlyOverview rows. It is idempotent (DECISIONS 16): the content hash of each document
covers its inputs (config snapshot, outage rows as counted, policy) and its figures, so
unchanged inputs write nothing, and changed inputs write a new revision that supersedes
the old one, keeps its number, and leaves its files in place (moved to `superseded/`).

Two runs of one month never overlap: each takes the month's BillingRun row with a
conditional UPDATE first (see billing.models.BillingRun).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from billing.bills import MemberBill, MonthBills, month_bills_compute
from billing.costs import CostSummary, cost_summary_compute
from billing.models import BillingRun, DocumentStatus, MonthlyOverview, Statement, StatementLine
from billing.money import money_sum, percent_floor
from billing.rendering import (
    billing_dir,
    cost_summary_pdf_path,
    draft_dir,
    month_dir,
    overview_stem,
    pdf_renderer,
    statement_stems,
    superseded_dir,
)
from billing.selectors import (
    API_UPTIME_DECIMALS,
    billing_month_has_statements,
    billing_policy,
    counted_outage_record,
    member_event_names_for,
    outage_rows_for_month,
    overview_csv,
    overview_document,
    statement_csv,
    statement_document,
)
from billing.sla import MonthWindow, parse_month, previous_month_window
from members.selectors import NoConfigError, config_snapshot_in_force

logger = logging.getLogger("billing.statements")

DEFAULT_LOCK_TIMEOUT_SECONDS = 3600

ProgressCallback = Callable[[int, int, str], None]
Action = Literal["created", "revised", "unchanged", "draft", "dry-run"]


class BillingError(Exception):
    """A run that cannot go ahead; the message says why, for the operator."""


class MonthNotEnded(BillingError):
    pass


class UnknownMember(BillingError):
    pass


class BillingLocked(BillingError):
    pass


@dataclass(frozen=True)
class StatementOutcome:
    member_key: str
    member_name: str
    action: Action
    number: str
    revision: int
    base: Decimal
    credit: Decimal
    billed: Decimal
    services: int
    services_missing_sla: int
    statement: Statement | None = None
    previous: Statement | None = None


@dataclass(frozen=True)
class MonthRunResult:
    month: str
    config_snapshot_id: int
    config_postdates_month: bool
    dry_run: bool
    draft: bool
    statements: tuple[StatementOutcome, ...]
    overview: MonthlyOverview | None
    overview_action: Action | Literal["skipped"]
    inactive_members: tuple[str, ...]
    problems: tuple[str, ...]
    files_written: tuple[str, ...] = field(default=())
    pdf_failures: tuple[str, ...] = field(default=())

    @property
    def base(self) -> Decimal:
        return money_sum(o.base for o in self.statements)

    @property
    def credit(self) -> Decimal:
        return money_sum(o.credit for o in self.statements)

    @property
    def billed(self) -> Decimal:
        return money_sum(o.billed for o in self.statements)

    @property
    def changed(self) -> bool:
        return any(o.action in ("created", "revised", "draft") for o in self.statements) or self.overview_action in (
            "created",
            "revised",
            "draft",
        )

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for outcome in self.statements:
            counts[outcome.action] = counts.get(outcome.action, 0) + 1
        return {
            "month": self.month,
            "statements": counts,
            "overview": self.overview_action,
            "base": str(self.base),
            "credit": str(self.credit),
            "billed": str(self.billed),
            "problems": len(self.problems),
            "pdf_failures": len(self.pdf_failures),
        }


# --- the lock --------------------------------------------------------------------------------


def _lock_timeout() -> timedelta:
    return timedelta(seconds=getattr(settings, "BILLING_LOCK_TIMEOUT_SECONDS", DEFAULT_LOCK_TIMEOUT_SECONDS))


def billing_run_lock(*, month: date) -> str:
    """Take the month's lock; returns its token. Raises BillingLocked when another run holds it.

    A lock older than BILLING_LOCK_TIMEOUT_SECONDS is taken over: its holder died.
    """
    with contextlib.suppress(IntegrityError):  # the other run created it a moment ago
        BillingRun.objects.get_or_create(month=month)
    token = uuid.uuid4().hex
    now = timezone.now()
    taken = (
        BillingRun.objects.filter(month=month)
        .filter(Q(lock_token="") | Q(locked_at__lt=now - _lock_timeout()))
        .update(
            lock_token=token,
            locked_at=now,
            locked_by=f"{socket.gethostname()}/{os.getpid()}",
            last_started_at=now,
        )
    )
    if taken != 1:
        holder = BillingRun.objects.filter(month=month).values_list("locked_by", "locked_at").first()
        raise BillingLocked(f"another run of {month:%Y-%m} is in progress ({holder[0]} since {holder[1]:%H:%M:%S})")
    return token


def billing_run_unlock(
    *, month: date, token: str, outcome: str, summary: dict[str, Any], error: str = "", generated: bool = False
) -> None:
    now = timezone.now()
    values: dict[str, Any] = {
        "lock_token": "",
        "locked_at": None,
        "locked_by": "",
        "last_finished_at": now,
        "last_outcome": outcome,
        "last_summary": summary,
        "last_error": error,
    }
    if generated:
        values["generated_at"] = now
    BillingRun.objects.filter(month=month, lock_token=token).update(runs=F("runs") + 1, **values)


# --- content hashes --------------------------------------------------------------------------


def _hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def statement_payload(*, bill: MemberBill, window: MonthWindow, inputs: dict[str, Any]) -> dict[str, Any]:
    """What a statement's content hash covers: its inputs as used and every figure it shows."""
    return {
        **inputs,
        "month": window.label,
        "member": [bill.member.key, bill.member.name, bill.member.level, bill.member.region],
        "lines": [
            [
                line.service.key,
                line.service.name,
                line.service.level_required,
                line.service.nodes,
                str(line.service.cores),
                str(line.service.memory),
                str(line.service.disk),
                str(line.service.bandwidth),
                str(line.price.cores),
                str(line.price.memory),
                str(line.price.disk),
                str(line.price.bandwidth),
                str(line.base),
                str(line.credit),
                str(line.billed),
                line.downtime_seconds,
                list(line.service_outage_ids),
            ]
            for line in bill.lines
        ],
        "outages": [
            [o.row_id, o.kind.value, o.start_offset, o.end_offset, o.row.end_time is None]
            for o in sorted(bill.outages.values(), key=lambda o: o.row_id)
        ],
    }


# --- writing records --------------------------------------------------------------------------


def _statement_number(*, window: MonthWindow, sequence: int) -> str:
    return f"IBP-{window.start:%Y%m}-{sequence:04d}"


def _next_sequence(*, month: date) -> int:
    numbers = (
        Statement.objects.filter(month=month)
        .exclude(status=DocumentStatus.DRAFT)
        .values_list("number", flat=True)
        .distinct()
    )
    used = [int(n.rsplit("-", 1)[1]) for n in numbers if n.rsplit("-", 1)[-1].isdigit()]
    return max(used, default=0) + 1


def _statement_create(
    *,
    bill: MemberBill,
    window: MonthWindow,
    number: str,
    revision: int,
    status: str,
    supersedes: Statement | None,
    content_hash: str,
    inputs: dict[str, Any],
    snapshot_id: int,
    postdates: bool,
    now: datetime,
) -> Statement:
    outages = sorted(bill.outages.values())  # by counted start, then id
    statement = Statement.objects.create(
        member_key=bill.member.key,
        member_name=bill.member.name,
        member_level=bill.member.level,
        member_region=bill.member.region,
        month=window.first_day,
        number=number,
        revision=revision,
        status=status,
        supersedes=supersedes,
        base_total=bill.base,
        credit_total=bill.credit,
        billed_total=bill.billed,
        service_count=len(bill.lines),
        services_missing_sla=sum(1 for line in bill.lines if not line.meets_sla),
        meets_sla=bill.meets_sla,
        downtime_seconds=bill.downtime_seconds,
        service_seconds=bill.service_seconds,
        uptime_percent=percent_floor(bill.uptime, decimals=API_UPTIME_DECIMALS),
        month_seconds=window.seconds,
        credit_policy=inputs["policy"],
        config_snapshot_id=snapshot_id,
        config_postdates_month=postdates,
        outages=[counted_outage_record(o) for o in outages],
        content_hash=content_hash,
        computed_at=now,
    )
    StatementLine.objects.bulk_create(
        [
            StatementLine(
                statement=statement,
                position=position,
                service_key=line.service.key,
                service_name=line.service.name or line.service.key,
                level_required=line.service.level_required,
                nodes=line.service.nodes,
                cores=line.service.cores,
                memory=line.service.memory,
                disk=line.service.disk,
                bandwidth=line.service.bandwidth,
                price_cores=line.price.cores,
                price_memory=line.price.memory,
                price_disk=line.price.disk,
                price_bandwidth=line.price.bandwidth,
                base_exact=line.base_exact,
                base=line.base,
                credit=line.credit,
                billed=line.billed,
                downtime_seconds=line.downtime_seconds,
                month_seconds=line.month_seconds,
                uptime_percent=line.uptime_percent(decimals=API_UPTIME_DECIMALS),
                meets_sla=line.meets_sla,
                service_outage_ids=list(line.service_outage_ids),
            )
            for position, line in enumerate(bill.lines, start=1)
        ]
    )
    return statement


def _overview_members(bills: MonthBills, numbers: dict[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for bill in bills.members:
        rows.append(
            {
                "key": bill.member.key,
                "name": bill.member.name,
                "level": bill.member.level,
                "region": bill.member.region,
                "status": "billed",
                "statement_number": numbers.get(bill.member.key, ""),
                "services": len(bill.lines),
                "services_missing_sla": sum(1 for line in bill.lines if not line.meets_sla),
                "uptime_percent": str(percent_floor(bill.uptime, decimals=4)),
                "meets_sla": bill.meets_sla,
                "base": str(bill.base),
                "credit": str(bill.credit),
                "billed": str(bill.billed),
            }
        )
    for member, status in [(m, "inactive") for m in bills.inactive] + [(m, "unpriced") for m in bills.unpriced]:
        # Listed with $0 (DECISIONS 10), so the overview shows who is not billed and why.
        rows.append(
            {
                "key": member.key,
                "name": member.name,
                "level": member.level,
                "region": member.region,
                "status": status,
                "statement_number": "",
                "services": 0,
                "services_missing_sla": 0,
                "uptime_percent": "",
                "meets_sla": True,
                "base": "0.00",
                "credit": "0.00",
                "billed": "0.00",
            }
        )
    rows.sort(key=lambda row: row["key"])
    return rows


def _network_uptime(bills: MonthBills) -> Decimal:
    total = sum(bill.service_seconds for bill in bills.members)
    down = sum(bill.downtime_seconds for bill in bills.members)
    ratio = Fraction(total - down, total) if total else Fraction(1)
    return percent_floor(ratio, decimals=API_UPTIME_DECIMALS)


# --- files -----------------------------------------------------------------------------------


def _write_text(path: Path, text: str) -> None:
    """Write atomically: a reader (or a crash) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def _move_to_superseded(record: Statement | MonthlyOverview) -> None:
    """Keep an old revision's files, out of the way of the current ones."""
    changed: list[str] = []
    for attribute in ("pdf_path", "json_path", "csv_path"):
        current = getattr(record, attribute)
        if not current:
            continue
        source = Path(current)
        target = superseded_dir(record.month) / f"{source.stem}-r{record.revision}{source.suffix}"
        if source.exists() and source.resolve() != target.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            n = 1
            while target.exists():  # never overwrite an older kept file
                n += 1
                target = target.with_name(f"{source.stem}-r{record.revision}.{n}{source.suffix}")
            shutil.move(str(source), target)
            setattr(record, attribute, str(target))
            changed.append(attribute)
    if changed:
        type(record).objects.filter(pk=record.pk).update(**{a: getattr(record, a) for a in changed})


def _files_missing(record: Statement | MonthlyOverview) -> bool:
    return not record.json_path or not Path(record.json_path).exists()


def _statement_files_write(statement: Statement, stem: str, failures: list[str]) -> list[str]:
    folder = draft_dir(statement.month) if statement.status == DocumentStatus.DRAFT else month_dir(statement.month)
    json_path, csv_path, pdf_path = (folder / f"{stem}{ext}" for ext in (".json", ".csv", ".pdf"))
    # Compact: json's C encoder is used only without indent, and a statement can list
    # thousands of outages. `python -m json.tool` pretty-prints it for a reader.
    _write_text(json_path, json.dumps(statement_document(statement=statement), separators=(",", ":")) + "\n")
    _write_text(csv_path, statement_csv(statement=statement))
    written = [str(json_path), str(csv_path)]
    pdf = ""
    try:
        if pdf_renderer().render_statement(statement=statement, path=pdf_path):
            pdf = str(pdf_path)
            written.append(pdf)
    except Exception as exc:  # a renderer bug must not lose the issued figures
        logger.exception("event=pdf_failed document=statement number=%s error=%s", statement.number, exc)
        failures.append(f"{statement.number}: {exc}")
    statement.json_path, statement.csv_path, statement.pdf_path = str(json_path), str(csv_path), pdf
    Statement.objects.filter(pk=statement.pk).update(
        json_path=statement.json_path, csv_path=statement.csv_path, pdf_path=pdf
    )
    return written


def _overview_files_write(overview: MonthlyOverview, statements: Sequence[Statement], failures: list[str]) -> list[str]:
    folder = draft_dir(overview.month) if overview.status == DocumentStatus.DRAFT else month_dir(overview.month)
    stem = overview_stem(overview.month)
    json_path, csv_path, pdf_path = (folder / f"{stem}{ext}" for ext in (".json", ".csv", ".pdf"))
    _write_text(json_path, json.dumps(overview_document(overview=overview), indent=2) + "\n")  # small
    _write_text(csv_path, overview_csv(overview=overview))
    written = [str(json_path), str(csv_path)]
    pdf = ""
    try:
        if pdf_renderer().render_overview(overview=overview, statements=statements, path=pdf_path):
            pdf = str(pdf_path)
            written.append(pdf)
    except Exception as exc:
        logger.exception("event=pdf_failed document=overview month=%s error=%s", overview.month_label, exc)
        failures.append(f"overview {overview.month_label}: {exc}")
    overview.json_path, overview.csv_path, overview.pdf_path = str(json_path), str(csv_path), pdf
    MonthlyOverview.objects.filter(pk=overview.pk).update(
        json_path=overview.json_path, csv_path=overview.csv_path, pdf_path=pdf
    )
    return written


# --- the month run -----------------------------------------------------------------------------


def _resolve_member(config: Any, member: str) -> str:
    found = config.member_by_name(member)
    if found is None:
        lowered = member.strip().lower()
        matches = [m for m in config.members.values() if m.key.lower() == lowered or m.name.lower() == lowered]
        found = matches[0] if len(matches) == 1 else None
    if found is None:
        known = ", ".join(sorted(config.members))
        raise UnknownMember(f"no member {member!r} in the config in force for the month (members: {known})")
    return found.key


def statement_generate_month(
    *,
    month: MonthWindow | str,
    member: str | None = None,
    dry_run: bool = False,
    draft: bool = False,
    force: bool = False,
    now: datetime | None = None,
    progress: ProgressCallback | None = None,
) -> MonthRunResult:
    """Issue the statements and the overview of one month (DECISIONS 15–17).

    - `month`: a MonthWindow or `YYYY-MM`. A month that has not ended is refused unless
      `draft`: drafts are stored with status `draft`, replaced by the next draft, and their
      files go to `…/YYYY-MM/draft/`.
    - `member`: only that member's statement (key or Details.Name); the overview is left alone.
    - `dry_run`: compute and return the figures; write nothing, take no lock.
    - `force`: write a new revision even when nothing changed (e.g. to re-render PDFs).
    """
    started = time.monotonic()
    now = now or timezone.now()
    try:
        window = month if isinstance(month, MonthWindow) else parse_month(month)
    except ValueError as exc:
        raise BillingError(str(exc)) from None
    if not draft and not window.has_ended(now=now):
        raise MonthNotEnded(
            f"{window.label} has not ended (it ends {window.end:%Y-%m-%d %H:%M} UTC); use --draft for a provisional run"
        )
    if window.start > now:
        raise MonthNotEnded(f"{window.label} has not started yet")
    try:
        policy, tiers = billing_policy()
    except ValueError as exc:
        raise BillingError(str(exc)) from None
    try:
        in_force = config_snapshot_in_force(at=window.end)
    except NoConfigError as exc:
        raise BillingError(str(exc)) from None
    config = in_force.config
    member_keys = None if member is None else [_resolve_member(config, member)]
    rows = outage_rows_for_month(window=window, now=now, member_names=member_event_names_for(config, member_keys))
    if progress:
        progress(0, 1, "computing")
    bills = month_bills_compute(
        config=config, window=window, rows=rows, now=now, policy=policy, tiers=tiers, member_keys=member_keys
    )
    inputs = {
        "policy": policy.value,
        "tiers": [[str(a), str(b)] for a, b in tiers] if policy.value == "tiered" else [],
        "config": in_force.snapshot.content_hash or str(in_force.snapshot.pk),
        "config_postdates_month": not in_force.predates,
    }
    common = {
        "month": window.label,
        "config_snapshot_id": in_force.snapshot.pk,
        "config_postdates_month": not in_force.predates,
        "dry_run": dry_run,
        "draft": draft,
        "inactive_members": tuple(m.key for m in bills.inactive),
        "problems": bills.problems,
    }
    if dry_run:
        outcomes = tuple(
            StatementOutcome(
                member_key=bill.member.key,
                member_name=bill.member.name,
                action="dry-run",
                number="",
                revision=0,
                base=bill.base,
                credit=bill.credit,
                billed=bill.billed,
                services=len(bill.lines),
                services_missing_sla=sum(1 for line in bill.lines if not line.meets_sla),
            )
            for bill in bills.members
        )
        return MonthRunResult(statements=outcomes, overview=None, overview_action="dry-run", **common)

    token = billing_run_lock(month=window.first_day)
    outcome, summary, error, generated = "failed", {}, "", False
    try:
        result = _generate_locked(
            window=window,
            bills=bills,
            inputs=inputs,
            in_force_snapshot_id=in_force.snapshot.pk,
            postdates=not in_force.predates,
            member_keys=member_keys,
            all_member_keys=list(config.members),
            draft=draft,
            force=force,
            now=now,
            progress=progress,
            common=common,
        )
        summary = result.summary()
        outcome = "draft" if draft else ("changed" if result.changed else "unchanged")
        generated = not draft and member_keys is None
        return result
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        billing_run_unlock(
            month=window.first_day, token=token, outcome=outcome, summary=summary, error=error, generated=generated
        )
        logger.info(
            "event=billing_month_run month=%s outcome=%s member=%s draft=%s statements=%s overview=%s base=%s credit=%s billed=%s problems=%d seconds=%.3f",
            window.label,
            outcome,
            member or "-",
            draft,
            ",".join(f"{k}:{v}" for k, v in summary.get("statements", {}).items()) or "-",
            summary.get("overview", "-"),
            summary.get("base", "-"),
            summary.get("credit", "-"),
            summary.get("billed", "-"),
            len(bills.problems),
            time.monotonic() - started,
        )


def _generate_locked(
    *,
    window: MonthWindow,
    bills: MonthBills,
    inputs: dict[str, Any],
    in_force_snapshot_id: int,
    postdates: bool,
    member_keys: list[str] | None,
    all_member_keys: list[str],
    draft: bool,
    force: bool,
    now: datetime,
    progress: ProgressCallback | None,
    common: dict[str, Any],
) -> MonthRunResult:
    first_day = window.first_day
    total_steps = len(bills.members) + 1
    outcomes: list[StatementOutcome] = []
    superseded: list[Statement | MonthlyOverview] = []
    numbers: dict[str, str] = {}
    with transaction.atomic():
        status = DocumentStatus.DRAFT if draft else DocumentStatus.ISSUED
        # A new draft replaces the old one; an issued statement makes its member's draft moot.
        drafts = Statement.objects.filter(month=first_day, status=DocumentStatus.DRAFT)
        if member_keys is not None:
            drafts = drafts.filter(member_key__in=member_keys)
        drafts.delete()
        current = {
            s.member_key: s
            for s in Statement.objects.select_for_update().filter(month=first_day, status=DocumentStatus.ISSUED)
        }
        sequence = _next_sequence(month=first_day)
        member_order = {key: position for position, key in enumerate(sorted(all_member_keys), start=1)}
        for done, bill in enumerate(bills.members, start=1):
            content_hash = _hash(statement_payload(bill=bill, window=window, inputs=inputs))
            previous = current.get(bill.member.key)
            fields = {
                "bill": bill,
                "window": window,
                "content_hash": content_hash,
                "inputs": inputs,
                "snapshot_id": in_force_snapshot_id,
                "postdates": postdates,
                "now": now,
            }
            if draft:
                number = (
                    previous.number if previous else f"DRAFT-{window.start:%Y%m}-{member_order[bill.member.key]:04d}"
                )
                statement = _statement_create(number=number, revision=0, status=status, supersedes=None, **fields)
                action: Action = "draft"
            elif previous is not None and previous.content_hash == content_hash and not force:
                statement, action = previous, "unchanged"
            elif previous is not None:
                Statement.objects.filter(pk=previous.pk).update(status=DocumentStatus.SUPERSEDED)
                previous.status = DocumentStatus.SUPERSEDED
                superseded.append(previous)
                statement = _statement_create(
                    number=previous.number, revision=previous.revision + 1, status=status, supersedes=previous, **fields
                )
                action = "revised"
            else:
                number = _statement_number(window=window, sequence=sequence)
                sequence += 1
                statement = _statement_create(number=number, revision=1, status=status, supersedes=None, **fields)
                action = "created"
            numbers[bill.member.key] = statement.number
            outcomes.append(
                StatementOutcome(
                    member_key=bill.member.key,
                    member_name=bill.member.name,
                    action=action,
                    number=statement.number,
                    revision=statement.revision,
                    base=statement.base_total,
                    credit=statement.credit_total,
                    billed=statement.billed_total,
                    services=statement.service_count,
                    services_missing_sla=statement.services_missing_sla,
                    statement=statement,
                    previous=previous if action == "revised" else None,
                )
            )
            if progress:
                progress(done, total_steps, bill.member.key)

        overview: MonthlyOverview | None = None
        overview_action: Action | Literal["skipped"] = "skipped"
        if member_keys is None:
            overview, overview_action = _overview_write(
                window=window,
                bills=bills,
                numbers=numbers,
                inputs=inputs,
                snapshot_id=in_force_snapshot_id,
                postdates=postdates,
                draft=draft,
                force=force,
                now=now,
                superseded=superseded,
            )
        if progress:
            progress(total_steps, total_steps, "overview")

    # Files after the commit, still under the lock. Each current document whose companions are
    # missing (new, or lost in a crash after the commit) is written now, so a re-run repairs.
    written: list[str] = []
    failures: list[str] = []
    for record in superseded:
        _move_to_superseded(record)
    stems = statement_stems(month=first_day, member_keys=all_member_keys)
    for outcome in outcomes:
        statement = outcome.statement
        if statement is not None and (outcome.action != "unchanged" or _files_missing(statement)):
            written.extend(_statement_files_write(statement, stems[statement.member_key], failures))
    if overview is not None and (overview_action != "unchanged" or _files_missing(overview)):
        statements = [o.statement for o in outcomes if o.statement is not None]
        written.extend(_overview_files_write(overview, statements, failures))
    return MonthRunResult(
        statements=tuple(outcomes),
        overview=overview,
        overview_action=overview_action,
        files_written=tuple(written),
        pdf_failures=tuple(failures),
        **common,
    )


def _overview_write(
    *,
    window: MonthWindow,
    bills: MonthBills,
    numbers: dict[str, str],
    inputs: dict[str, Any],
    snapshot_id: int,
    postdates: bool,
    draft: bool,
    force: bool,
    now: datetime,
    superseded: list[Statement | MonthlyOverview],
) -> tuple[MonthlyOverview, Action]:
    first_day = window.first_day
    members = _overview_members(bills, numbers)
    figures = {
        "base_total": bills.base,
        "credit_total": bills.credit,
        "billed_total": bills.billed,
        "active_members": len(bills.members),
        "inactive_members": len(bills.inactive),
        "service_lines": sum(len(bill.lines) for bill in bills.members),
        "services_missing_sla": sum(1 for bill in bills.members for line in bill.lines if not line.meets_sla),
        "uptime_percent": _network_uptime(bills),
        "month_seconds": window.seconds,
    }
    content_hash = _hash(
        {**inputs, "month": window.label, "members": members, "problems": list(bills.problems), **figures}
    )
    record = {
        **figures,
        "members": members,
        "problems": list(bills.problems),
        "credit_policy": inputs["policy"],
        "config_snapshot_id": snapshot_id,
        "config_postdates_month": postdates,
        "content_hash": content_hash,
        "computed_at": now,
    }
    if draft:
        MonthlyOverview.objects.filter(month=first_day, status=DocumentStatus.DRAFT).delete()
        overview = MonthlyOverview.objects.create(month=first_day, revision=0, status=DocumentStatus.DRAFT, **record)
        return overview, "draft"
    MonthlyOverview.objects.filter(month=first_day, status=DocumentStatus.DRAFT).delete()
    previous = MonthlyOverview.objects.select_for_update().filter(month=first_day, status=DocumentStatus.ISSUED).first()
    if previous is not None and previous.content_hash == content_hash and not force:
        return previous, "unchanged"
    if previous is not None:
        MonthlyOverview.objects.filter(pk=previous.pk).update(status=DocumentStatus.SUPERSEDED)
        previous.status = DocumentStatus.SUPERSEDED
        superseded.append(previous)
    revision = (previous.revision + 1) if previous else 1
    overview = MonthlyOverview.objects.create(
        month=first_day, revision=revision, status=DocumentStatus.ISSUED, supersedes=previous, **record
    )
    return overview, ("revised" if previous else "created")


def statement_generate_previous_month(*, now: datetime | None = None) -> MonthRunResult | None:
    """The monthly schedule (1st at 00:05 UTC): the previous month. Another run holding the
    lock is not an error here: it is doing this very work."""
    now = now or timezone.now()
    window = previous_month_window(now)
    try:
        return statement_generate_month(month=window, now=now)
    except BillingLocked as exc:
        logger.info("event=billing_month_skipped month=%s reason=locked detail=%s", window.label, exc)
        return None


def statement_catch_up(*, now: datetime | None = None) -> MonthRunResult | None:
    """At start-up: generate the previous month if it has no statements yet (DECISIONS 17).
    Older months are generated only by hand, with `generate_invoices`."""
    now = now or timezone.now()
    window = previous_month_window(now)
    marker = BillingRun.objects.filter(month=window.first_day, generated_at__isnull=False).exists()
    if marker or billing_month_has_statements(month=window.first_day):
        logger.info("event=billing_catch_up month=%s outcome=already_generated", window.label)
        return None
    try:
        return statement_generate_month(month=window, now=now)
    except BillingError as exc:
        logger.warning("event=billing_catch_up month=%s outcome=skipped reason=%s", window.label, exc)
        return None


# --- the daily cost summary ----------------------------------------------------------------------


@dataclass(frozen=True)
class CostSummaryResult:
    summary: CostSummary
    json_path: str
    pdf_path: str


def cost_summary_generate(*, now: datetime | None = None) -> CostSummaryResult:
    """The daily "cost by service" document (00:05 UTC): costs per service per member from the
    config in force now, as a JSON companion and a PDF through the renderer interface.
    Re-running on the same day rewrites the same content."""
    now = now or timezone.now()
    try:
        in_force = config_snapshot_in_force(at=now)
    except NoConfigError as exc:
        raise BillingError(str(exc)) from None
    summary = cost_summary_compute(config=in_force.config, day=now.date(), config_snapshot_id=in_force.snapshot.pk)
    pdf_path = cost_summary_pdf_path(summary.day)
    json_path = pdf_path.with_suffix(".json")
    document = {
        "day": f"{summary.day:%Y-%m-%d}",
        "currency": "USD",
        "config_snapshot": summary.config_snapshot_id,
        "services": [
            {
                "key": s.key,
                "name": s.name,
                "level_required": s.level_required,
                "members": {key: str(cost) for key, cost in s.member_costs},
                "total": str(s.total),
            }
            for s in summary.services
        ],
        "members": {key: str(total) for key, total in summary.member_totals},
        "inactive_members": list(summary.inactive_members),
        "total": str(summary.total),
        "problems": list(summary.problems),
    }
    billing_dir().mkdir(parents=True, exist_ok=True)
    _write_text(json_path, json.dumps(document, indent=2) + "\n")
    wrote_pdf = pdf_renderer().render_cost_summary(summary=summary, path=pdf_path)
    logger.info(
        "event=cost_summary_generated day=%s services=%d members=%d total=%s pdf=%s",
        f"{summary.day:%Y-%m-%d}",
        len(summary.services),
        len(summary.member_totals),
        summary.total,
        "yes" if wrote_pdf else "no",
    )
    return CostSummaryResult(summary=summary, json_path=str(json_path), pdf_path=str(pdf_path) if wrote_pdf else "")
