"""Writes of billing: issuing a month's statements and overview, and the daily cost summary.

`statement_generate_month` is the only writer of Statement, StatementLine and
MonthlyOverview rows. It is idempotent (DECISIONS 16): the content hash of each document
covers its inputs (config snapshot, outage rows as counted, policy) and its figures, so
unchanged inputs write nothing, and changed inputs write a new revision that supersedes
the old one, keeps its number, and keeps its files (moved to `superseded/`, the PDF stamped).

Two runs of one month never overlap: each takes the month's BillingRun row with a
conditional UPDATE first (see billing.models.BillingRun), before it reads any input. The
daily cost summary has the same lock per day (CostSummaryRun).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
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
from billing.models import BillingRun, CostSummaryRun, DocumentStatus, MonthlyOverview, Statement, StatementLine
from billing.money import money_sum, percent_floor
from billing.rendering import (
    billing_dir,
    cost_summary_pdf_path,
    draft_dir,
    file_write_atomic,
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
from billing.sla import CreditPolicy, MonthWindow, parse_month, previous_month_window
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
    # "skipped": a --member run that changed nothing; "stale": a --member run that changed its
    # statement but left the overview, because other members' statements are out of date too.
    overview_action: Action | Literal["skipped", "stale"]
    inactive_members: tuple[str, ...]
    problems: tuple[str, ...]
    files_written: tuple[str, ...] = field(default=())
    pdf_failures: tuple[str, ...] = field(default=())
    overview_stale_members: tuple[str, ...] = field(default=())

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


def _lock_take(model: type[BillingRun | CostSummaryRun], *, what: str, **key: Any) -> str:
    """Take the lock of `model`'s row for `key` with a conditional UPDATE; returns its token.
    Raises BillingLocked when another run holds it. A lock older than
    BILLING_LOCK_TIMEOUT_SECONDS is taken over: its holder died."""
    with contextlib.suppress(IntegrityError):  # the other run created it a moment ago
        model.objects.get_or_create(**key)
    token = uuid.uuid4().hex
    now = timezone.now()
    taken = (
        model.objects.filter(**key)
        .filter(Q(lock_token="") | Q(locked_at__lt=now - _lock_timeout()))
        .update(
            lock_token=token,
            locked_at=now,
            locked_by=f"{socket.gethostname()}/{os.getpid()}",
            last_started_at=now,
        )
    )
    if taken != 1:
        holder = model.objects.filter(**key).values_list("locked_by", "locked_at").first()
        since = f" since {holder[1]:%H:%M:%S}" if holder and holder[1] else ""
        raise BillingLocked(f"another run of {what} is in progress ({holder[0] if holder else '?'}{since})")
    return token


def _lock_release(model: type[BillingRun | CostSummaryRun], *, token: str, values: dict[str, Any], **key: Any) -> None:
    values = {"lock_token": "", "locked_at": None, "locked_by": "", "last_finished_at": timezone.now(), **values}
    model.objects.filter(lock_token=token, **key).update(runs=F("runs") + 1, **values)


def billing_run_lock(*, month: date) -> str:
    """Take the month's lock; returns its token. Raises BillingLocked when another run holds it."""
    return _lock_take(BillingRun, what=f"{month:%Y-%m}", month=month)


def billing_run_unlock(
    *, month: date, token: str, outcome: str, summary: dict[str, Any], error: str = "", generated: bool = False
) -> None:
    values: dict[str, Any] = {"last_outcome": outcome, "last_summary": summary, "last_error": error}
    if generated:
        values["generated_at"] = timezone.now()
    _lock_release(BillingRun, token=token, values=values, month=month)


def cost_summary_lock(*, day: date) -> str:
    """Take the lock of the day's cost summary; returns its token. Raises BillingLocked."""
    return _lock_take(CostSummaryRun, what=f"the cost summary of {day:%Y-%m-%d}", day=day)


def cost_summary_unlock(*, day: date, token: str, outcome: str, error: str = "") -> None:
    _lock_release(CostSummaryRun, token=token, values={"last_outcome": outcome, "last_error": error}, day=day)


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
    file_write_atomic(path, text.encode("utf-8"))


def _in_superseded_dir(path: str, month: date) -> bool:
    return Path(path).parent.resolve() == superseded_dir(month).resolve()


def _kept_name(source: Path, record: Statement | MonthlyOverview, n: int) -> Path:
    tag = f"-r{record.revision}" if n == 1 else f"-r{record.revision}.{n}"
    return superseded_dir(record.month) / f"{source.stem}{tag}{source.suffix}"


def _move_to_superseded(record: Statement | MonthlyOverview) -> None:
    """Keep an old revision's files, out of the way of the current ones, never overwriting a
    kept file. Each move is recorded at once, and a file already moved by a run that died
    before recording it is found where that run put it."""
    for attribute in ("pdf_path", "json_path", "csv_path"):
        current = getattr(record, attribute)
        if not current or _in_superseded_dir(current, record.month):
            continue
        source = Path(current)
        if source.exists():
            n = 1
            while _kept_name(source, record, n).exists():
                n += 1
            target = _kept_name(source, record, n)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            kept = str(target)
        else:  # moved by a run that died before recording it: the last name kept for it
            n = 1
            while _kept_name(source, record, n + 1).exists():
                n += 1
            kept = str(_kept_name(source, record, n)) if _kept_name(source, record, n).exists() else ""
            if not kept:  # never left pointing where the current revision's file goes
                logger.warning("event=superseded_file_missing record=%s path=%s", record, source)
        setattr(record, attribute, kept)
        type(record).objects.filter(pk=record.pk).update(**{attribute: kept})


def _superseded_settle(*, month: date) -> None:
    """Stamp and move aside the files of every superseded revision of the month that are still
    where the current revision's files go.

    Not only the revisions this run superseded: a run that died between its commit and this
    step left them in place, and the current revision's files, written next, would overwrite
    them. Stamping comes before the move, so a file found in `superseded/` is always stamped
    (the stamp itself is idempotent), and this step can be run again after any crash.
    """
    for model in (Statement, MonthlyOverview):
        for record in model.objects.filter(month=month, status=DocumentStatus.SUPERSEDED):
            paths = [p for p in (record.pdf_path, record.json_path, record.csv_path) if p]
            if all(_in_superseded_dir(p, month) for p in paths):
                continue
            if record.pdf_path and not _in_superseded_dir(record.pdf_path, month) and Path(record.pdf_path).exists():
                try:
                    pdf_renderer().mark_superseded(record=record, path=Path(record.pdf_path))
                except Exception as exc:  # the issued file is kept either way
                    logger.exception("event=pdf_mark_superseded_failed record=%s error=%s", record, exc)
            _move_to_superseded(record)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files_missing(record: Statement | MonthlyOverview) -> bool:
    """True when a current record's files are not all on disk as it issued them: lost in a
    crash after the commit, deleted or altered by hand. The run then writes them again from
    the record, so an unchanged re-run repairs the folder without a new revision."""
    if not record.json_path or not Path(record.json_path).exists():
        return True
    if record.csv_path and not Path(record.csv_path).exists():
        return True
    if record.pdf_path:
        pdf = Path(record.pdf_path)
        if not pdf.exists():
            return True
        if record.pdf_sha256 and _sha256_of(pdf) != record.pdf_sha256:
            logger.warning("event=pdf_altered path=%s note=written_again_from_the_record", pdf)
            return True
    return False


def _statement_files_write(statement: Statement, stem: str, failures: list[str]) -> list[str]:
    folder = draft_dir(statement.month) if statement.status == DocumentStatus.DRAFT else month_dir(statement.month)
    json_path, csv_path, pdf_path = (folder / f"{stem}{ext}" for ext in (".json", ".csv", ".pdf"))
    # Compact: json's C encoder is used only without indent, and a statement can list
    # thousands of outages. `python -m json.tool` pretty-prints it for a reader.
    _write_text(json_path, json.dumps(statement_document(statement=statement), separators=(",", ":")) + "\n")
    _write_text(csv_path, statement_csv(statement=statement))
    written = [str(json_path), str(csv_path)]
    pdf, sha256 = "", ""
    try:
        if pdf_renderer().render_statement(statement=statement, path=pdf_path):
            pdf, sha256 = str(pdf_path), _sha256_of(pdf_path)
            written.append(pdf)
    except Exception as exc:  # a renderer bug must not lose the issued figures
        logger.exception("event=pdf_failed document=statement number=%s error=%s", statement.number, exc)
        failures.append(f"{statement.number}: {exc}")
    statement.json_path, statement.csv_path, statement.pdf_path = str(json_path), str(csv_path), pdf
    statement.pdf_sha256 = sha256
    Statement.objects.filter(pk=statement.pk).update(
        json_path=statement.json_path, csv_path=statement.csv_path, pdf_path=pdf, pdf_sha256=sha256
    )
    return written


def _overview_files_write(overview: MonthlyOverview, statements: Sequence[Statement], failures: list[str]) -> list[str]:
    folder = draft_dir(overview.month) if overview.status == DocumentStatus.DRAFT else month_dir(overview.month)
    stem = overview_stem(overview.month)
    json_path, csv_path, pdf_path = (folder / f"{stem}{ext}" for ext in (".json", ".csv", ".pdf"))
    _write_text(json_path, json.dumps(overview_document(overview=overview), indent=2) + "\n")  # small
    _write_text(csv_path, overview_csv(overview=overview))
    written = [str(json_path), str(csv_path)]
    pdf, sha256 = "", ""
    try:
        if pdf_renderer().render_overview(overview=overview, statements=statements, path=pdf_path):
            pdf, sha256 = str(pdf_path), _sha256_of(pdf_path)
            written.append(pdf)
    except Exception as exc:
        logger.exception("event=pdf_failed document=overview month=%s error=%s", overview.month_label, exc)
        failures.append(f"overview {overview.month_label}: {exc}")
    overview.json_path, overview.csv_path, overview.pdf_path = str(json_path), str(csv_path), pdf
    overview.pdf_sha256 = sha256
    MonthlyOverview.objects.filter(pk=overview.pk).update(
        json_path=overview.json_path, csv_path=overview.csv_path, pdf_path=pdf, pdf_sha256=sha256
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
    - `member`: only that member's statement (key or Details.Name). When it changes, the overview
      is re-issued from the whole month if every other statement is current (so it stays the
      sum of the issued statements); if not, it is left, and `overview_stale_members` says why.
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

    def read_inputs() -> _MonthInputs:
        return _month_inputs(
            window=window,
            member=member,
            now=now,
            policy=policy,
            tiers=tiers,
            dry_run=dry_run,
            draft=draft,
            progress=progress,
        )

    if dry_run:  # reads only: no lock, so a dry run never waits for or blocks a real one
        inputs = read_inputs()
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
            for bill in inputs.bills.members
        )
        return MonthRunResult(statements=outcomes, overview=None, overview_action="dry-run", **inputs.common)

    # The lock comes before the inputs are read: a run that read them before another run
    # committed newer ones (a late outage, a config sync) must not write after it, superseding
    # the correct revision with one computed from stale rows.
    token = billing_run_lock(month=window.first_day)
    outcome, summary, error, generated, problems = "failed", {}, "", False, 0
    try:
        inputs = read_inputs()
        problems = len(inputs.bills.problems)
        result = _generate_locked(
            window=window,
            bills=inputs.bills,
            inputs=inputs.hashed,
            in_force_snapshot_id=inputs.snapshot_id,
            postdates=inputs.postdates,
            member_keys=inputs.member_keys,
            all_member_keys=inputs.all_member_keys,
            whole_month=inputs.whole_month,
            draft=draft,
            force=force,
            now=now,
            progress=progress,
            common=inputs.common,
        )
        summary = result.summary()
        outcome = "draft" if draft else ("changed" if result.changed else "unchanged")
        generated = not draft and inputs.member_keys is None
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
            problems,
            time.monotonic() - started,
        )


@dataclass(frozen=True)
class _MonthInputs:
    bills: MonthBills
    hashed: dict[str, Any]  # what the content hashes cover besides the figures
    snapshot_id: int
    postdates: bool
    member_keys: list[str] | None
    all_member_keys: list[str]
    common: dict[str, Any]  # the MonthRunResult fields every outcome shares
    whole_month: Callable[[], MonthBills]  # the bills of every member (for a --member run's overview)


def _month_inputs(
    *,
    window: MonthWindow,
    member: str | None,
    now: datetime,
    policy: CreditPolicy,
    tiers: Sequence[tuple[Decimal, Decimal]],
    dry_run: bool,
    draft: bool,
    progress: ProgressCallback | None,
) -> _MonthInputs:
    """Read the month's inputs (the config in force, the outage rows) and compute its bills."""
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
    hashed = {
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

    def whole_month() -> MonthBills:
        if member_keys is None:
            return bills
        every_row = outage_rows_for_month(window=window, now=now, member_names=member_event_names_for(config, None))
        return month_bills_compute(config=config, window=window, rows=every_row, now=now, policy=policy, tiers=tiers)

    return _MonthInputs(
        bills=bills,
        hashed=hashed,
        snapshot_id=in_force.snapshot.pk,
        postdates=not in_force.predates,
        member_keys=member_keys,
        all_member_keys=list(config.members),
        common=common,
        whole_month=whole_month,
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
    whole_month: Callable[[], MonthBills],
    draft: bool,
    force: bool,
    now: datetime,
    progress: ProgressCallback | None,
    common: dict[str, Any],
) -> MonthRunResult:
    first_day = window.first_day
    total_steps = len(bills.members) + 1
    outcomes: list[StatementOutcome] = []
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
        overview_action: Action | Literal["skipped", "stale"] = "skipped"
        stale: tuple[str, ...] = ()
        overview_fields: dict[str, Any] = {
            "window": window,
            "inputs": inputs,
            "snapshot_id": in_force_snapshot_id,
            "postdates": postdates,
            "draft": draft,
            "now": now,
        }
        overview_statements = [o.statement for o in outcomes if o.statement is not None]
        if member_keys is None:
            overview, overview_action = _overview_write(bills=bills, numbers=numbers, force=force, **overview_fields)
        elif not draft and any(o.action in ("created", "revised") for o in outcomes):
            # The overview must stay the sum of the issued statements, so a member's new
            # revision re-issues it, from the whole month, if every other statement is still
            # what its inputs give; otherwise it is left, and the run says whose are stale.
            issued = {**current, **{o.member_key: o.statement for o in outcomes if o.statement is not None}}
            every_bill = whole_month()
            stale = tuple(
                bill.member.key
                for bill in every_bill.members
                if bill.member.key not in issued
                or issued[bill.member.key].content_hash
                != _hash(statement_payload(bill=bill, window=window, inputs=inputs))
            )
            if stale:
                overview_action = "stale"
                logger.warning("event=billing_overview_stale month=%s members=%s", window.label, ",".join(stale))
            else:
                overview_statements = [issued[bill.member.key] for bill in every_bill.members]
                overview, overview_action = _overview_write(
                    bills=every_bill,
                    numbers={s.member_key: s.number for s in overview_statements},
                    force=False,
                    **overview_fields,
                )
        if progress:
            progress(total_steps, total_steps, "overview")

    # Files after the commit, still under the lock. Each current document whose companions are
    # missing (new, or lost in a crash after the commit) is written now, so a re-run repairs.
    written: list[str] = []
    failures: list[str] = []
    _superseded_settle(month=first_day)
    stems = statement_stems(month=first_day, member_keys=all_member_keys)
    for outcome in outcomes:
        statement = outcome.statement
        if statement is not None and (outcome.action != "unchanged" or _files_missing(statement)):
            written.extend(_statement_files_write(statement, stems[statement.member_key], failures))
    if overview is not None and (overview_action != "unchanged" or _files_missing(overview)):
        written.extend(_overview_files_write(overview, overview_statements, failures))
    return MonthRunResult(
        statements=tuple(outcomes),
        overview=overview,
        overview_action=overview_action,
        files_written=tuple(written),
        pdf_failures=tuple(failures),
        overview_stale_members=stale,
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
    Re-running on the same day rewrites the same content.

    Two runs of one day (the schedule and a manual run) never overlap: the day's
    CostSummaryRun lock is taken before the config is read, as for a month (BillingLocked).
    """
    now = now or timezone.now()
    day = now.date()
    token = cost_summary_lock(day=day)
    outcome, error = "failed", ""
    try:
        result = _cost_summary_write(now=now)
        outcome = "written"
        return result
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        cost_summary_unlock(day=day, token=token, outcome=outcome, error=error)


def cost_summary_generate_daily(*, now: datetime | None = None) -> CostSummaryResult | None:
    """The daily schedule. Another run holding the day's lock is not an error here: it is
    writing this very document."""
    try:
        return cost_summary_generate(now=now)
    except BillingLocked as exc:
        logger.info("event=cost_summary_skipped reason=locked detail=%s", exc)
        return None


def _cost_summary_write(*, now: datetime) -> CostSummaryResult:
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
