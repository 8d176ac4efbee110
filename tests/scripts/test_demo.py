"""scripts/demo.py: Ctrl-C stops the whole stack and gives the terminal back; one demo per folder."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_script", REPO / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def restored_handlers() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def stack(*, ignore_term: bool = False) -> subprocess.Popen[bytes]:
    """A stand-in for honcho: a process in a session of its own, with a child of its own."""
    code = (
        "import signal, subprocess, sys, time\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
        + "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        + "time.sleep(60)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_it_stops_everything_on_ctrl_c_and_returns(demo: ModuleType, restored_handlers: None) -> None:
    """SIGINT arrives while the main thread waits for the stack: the whole group stops and
    `wait` returns (before the fix the handler's own wait deadlocked on Popen's lock)."""
    process = stack()
    supervisor = demo.Supervisor(process)
    supervisor.stop_on_signals()
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    code = supervisor.wait()
    assert time.monotonic() - started < 5
    assert (code, supervisor.exit_code(code)) == (-signal.SIGTERM, 130)
    deadline = time.monotonic() + 5
    while group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(process.pid)


def test_it_kills_a_stack_that_ignores_the_stop_after_the_grace_time(demo: ModuleType, restored_handlers: None) -> None:
    process = stack(ignore_term=True)
    time.sleep(0.3)  # the stand-in has set its handler
    supervisor = demo.Supervisor(process, grace=0.5)
    started = time.monotonic()
    assert supervisor.stop_and_wait() == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 5


def test_it_refuses_a_second_demo_in_the_same_folder(demo: ModuleType, tmp_path: Path) -> None:
    with demo.WorkDirLock(tmp_path), pytest.raises(SystemExit, match=r"a demo is already running in .* \(pid \d+\)"):
        demo.WorkDirLock(tmp_path).__enter__()
    with demo.WorkDirLock(tmp_path):  # free again once the first one is done
        pass
