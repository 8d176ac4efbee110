"""billing/rendering.py: file names, and writes that two runs or a crash can never mix."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from billing.rendering import file_name_sanitise, file_write_atomic


def test_it_never_lets_two_writers_of_one_file_mix_or_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writer A has written its temporary file and is about to rename it when writer B writes
    the same file from start to end. Each has a temporary file of its own (pid and uuid), so
    B's rename leaves B's bytes, then A's rename leaves A's: the file is always one whole
    version, neither rename fails, and no temporary file is left behind."""
    target = tmp_path / "2025_03-IBP-Service_Alpha.json"
    real_replace = os.replace
    temporaries: list[str] = []

    def replace(source: str, destination: str) -> None:
        temporaries.append(os.path.basename(source))
        if len(temporaries) == 1:  # A, paused just before its rename: B runs
            file_write_atomic(target, b"B" * 100_000)
            assert target.read_bytes() == b"B" * 100_000
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    file_write_atomic(target, b"A" * 50_000)

    assert target.read_bytes() == b"A" * 50_000
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    assert len(set(temporaries)) == 2
    assert all(re.fullmatch(rf"\.{os.getpid()}-[0-9a-f]{{32}}\.partial", name) for name in temporaries)


def test_it_writes_a_file_whose_name_is_at_the_file_system_limit(tmp_path: Path) -> None:
    """255 bytes of name: the temporary name does not grow with it (`name.partial` would be
    263 bytes, past the limit, and the write would fail)."""
    target = tmp_path / ("ł" * 125 + "a.pdf")
    assert len(target.name.encode()) == 255
    file_write_atomic(target, b"%PDF-1.4")
    assert target.read_bytes() == b"%PDF-1.4"


def test_it_removes_its_temporary_file_when_the_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        file_write_atomic(tmp_path / "a.json", b"{}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ('A B/C\\D:E*F?G"H<I>J|K', "A_B_C_D_E_F_G_H_I_J_K"),  # the reference's ten characters
        (".hidden", "_hidden"),
        ("東" * 60, "東" * 50),  # 150 bytes: never half a character
        ("ł" * 76 + "x", "ł" * 75),
        ("", "_"),
    ],
)
def test_it_sanitises_names_within_150_bytes(name: str, expected: str) -> None:
    assert file_name_sanitise(name) == expected
