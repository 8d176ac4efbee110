"""The billing PDFs the API lists and serves (api-contract §2.17/§2.18, DECISIONS 18, reports §7).

The folder `{WorkDir}/tmp` is read on demand (it holds a few files a month), not kept in a
five-minute index as the reference does, so a new PDF shows at once and a deleted one
disappears at once (quirk Q20). Only what DECISIONS 18 writes is listed:

- `tmp/YYYY-MM/YYYY_MM-Monthly_Overview.pdf` (the overview), and
- `tmp/YYYY-MM/YYYY_MM-IBP-Service_<name>.pdf` (a member statement);

regular files only (a symbolic link is never followed), directly in a month folder: the
`superseded/` and `draft/` sub-folders, the JSON/CSV companions and the daily
`tmp/service_cost_YYYYMMDD.pdf` are not listed. Year and month come from the folder name.

A statement's `member_name` is the member key of the issued statement whose stored PDF path
is that file, so a key with `_` or `/` round-trips (Q20); a file no statement claims (an old
or hand-placed one) gets the reference's reading: `<name>` with every `_` turned into a space.

Path safety: a download is resolved by matching the request against these entries, whose
paths come from listing the folder; nothing the client sends is ever joined into a path, and
the chosen file is checked again to lie inside the folder before it is opened.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from billing.models import DocumentStatus, Statement
from billing.rendering import billing_dir

_MONTH_DIR = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])", re.ASCII)
_OVERVIEW = re.compile(r"[0-9]{4}_[0-9]{2}-Monthly_Overview\.pdf", re.ASCII)
_STATEMENT = re.compile(r"[0-9]{4}_[0-9]{2}-IBP-Service_(.+)\.pdf", re.ASCII | re.DOTALL)


@dataclass(frozen=True)
class PdfEntry:
    year: str  # "2025"
    month: str  # "03"
    member_name: str | None  # None for the overview
    file_name: str
    file_size: int
    modified_time: datetime  # UTC
    path: Path  # never exposed

    @property
    def is_overview(self) -> bool:
        return self.member_name is None

    def as_api(self) -> dict[str, Any]:
        """The §2.17 entry: keys in the contract's order, `member_name` omitted for an overview."""
        data: dict[str, Any] = {"year": self.year, "month": self.month}
        if self.member_name is not None:
            data["member_name"] = self.member_name
        data["is_overview"] = self.is_overview
        data["file_name"] = self.file_name
        data["file_size"] = self.file_size
        data["modified_time"] = self.modified_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        return data


class PdfNotFound(LookupError):
    """No listed PDF matches a download request; the message is the contract's 404 text."""


def _month_folders(root: Path, *, year: int | None, month: int | None) -> list[tuple[str, str, Path]]:
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return []
    folders = []
    for entry in entries:
        found = _MONTH_DIR.fullmatch(entry.name)
        if found is None or not entry.is_dir(follow_symlinks=False):
            continue
        if (year is not None and int(found[1]) != year) or (month is not None and int(found[2]) != month):
            continue
        folders.append((found[1], found[2], Path(entry.path)))
    return folders


def _statement_owners(month_firsts: list[str]) -> dict[str, str]:
    """Resolved PDF path → member key, for the issued statements of the listed months."""
    if not month_firsts:
        return {}
    rows = (
        Statement.objects.filter(month__in=month_firsts, status=DocumentStatus.ISSUED)
        .exclude(pdf_path="")
        .values_list("pdf_path", "member_key")
    )
    return {os.path.realpath(path): key for path, key in rows}


def pdf_entries(*, year: int | None = None, month: int | None = None, member: str | None = None) -> list[PdfEntry]:
    """The listed PDFs, newest month first; in a month the overview, then statements by
    member name (byte order), then file name. `year`/`month` filter on their own too (Q20);
    `member` keeps the statements whose member name equals it ignoring case."""
    root = billing_dir()
    folders = sorted(_month_folders(root, year=year, month=month), key=lambda f: (f[0], f[1]), reverse=True)
    owners = _statement_owners([f"{y}-{m}-01" for y, m, _ in folders])
    wanted = member.casefold() if member is not None else None
    listed: list[PdfEntry] = []
    for folder_year, folder_month, folder in folders:
        in_month: list[PdfEntry] = []
        for entry in os.scandir(folder):
            if not entry.name.endswith(".pdf") or not entry.is_file(follow_symlinks=False):
                continue
            if _OVERVIEW.fullmatch(entry.name):
                name = None
            elif (found := _STATEMENT.fullmatch(entry.name)) is not None:
                name = owners.get(os.path.realpath(entry.path), found[1].replace("_", " "))
            else:
                continue
            if wanted is not None and (name is None or name.casefold() != wanted):
                continue
            stat = entry.stat(follow_symlinks=False)
            in_month.append(
                PdfEntry(
                    year=folder_year,
                    month=folder_month,
                    member_name=name,
                    file_name=entry.name,
                    file_size=stat.st_size,
                    modified_time=datetime.fromtimestamp(int(stat.st_mtime), tz=UTC),
                    path=Path(entry.path),
                )
            )
        in_month.sort(key=lambda e: (not e.is_overview, (e.member_name or "").encode(), e.file_name.encode()))
        listed.extend(in_month)
    return listed


def pdf_months(entries: list[PdfEntry]) -> list[dict[str, Any]]:
    """Entries grouped by month, in the order given: the §2.17 `data` list (never null)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in entries:
        groups.setdefault((entry.year, entry.month), []).append(entry.as_api())
    return [{"year": year, "month": month, "pdfs": pdfs} for (year, month), pdfs in groups.items()]


def pdf_for_download(*, year: int, month: int, overview: bool, member: str) -> PdfEntry:
    """The listed PDF a download asks for (§2.18 step 5), or PdfNotFound with the 404 text."""
    label = f"{year:04d}-{month:02d}"
    entries = pdf_entries(year=year, month=month)
    if not entries:
        raise PdfNotFound(f"no PDFs found for {label}")
    if overview:
        found = next((e for e in entries if e.is_overview), None)
        if found is None:
            raise PdfNotFound(f"overview PDF not found for {label}")
        return found
    wanted = member.casefold()
    found = next((e for e in entries if e.member_name is not None and e.member_name.casefold() == wanted), None)
    if found is None:
        raise PdfNotFound(f"member PDF not found for {member} in {label}")
    return found


def pdf_open(entry: PdfEntry) -> Any:
    """Open a listed PDF for reading, after checking again that it is a regular file inside
    the folder (not a link, not elsewhere). Raises PdfNotFound when it vanished since."""
    root = os.path.realpath(billing_dir())
    real = os.path.realpath(entry.path)
    if os.path.commonpath([root, real]) != root or os.path.islink(entry.path):
        raise PdfNotFound("PDF not found")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(real, flags)
    except OSError:
        raise PdfNotFound("PDF not found") from None
    return os.fdopen(fd, "rb")
