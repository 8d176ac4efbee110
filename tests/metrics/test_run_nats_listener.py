"""`manage.py run_nats_listener` as an operator runs it: a real process, real signals.

The command runs in a subprocess against the test database and a real nats-server (or a
port where nothing listens), and is stopped with SIGTERM as systemd or Docker would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nats
import pytest
from django.db import connection

from collator.local_config import load_local_config
from metrics.listener import listener_config_from_settings
from metrics.protocol import SUBJECT_CLUSTER
from tests.nats_server import NatsServer, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_CONFIG = REPO_ROOT / "config" / "test-mysql.json"


class ListenerProcess:
    """`manage.py run_nats_listener` in a subprocess; its log lines are collected as they come."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_nats_listener", "--no-usage", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr_lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    def wait_for_log(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.stderr_lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged; stderr: {self.stderr_lines[-20:]}")
            time.sleep(0.05)

    def terminate_and_wait(self, timeout: float) -> tuple[int, float, str]:
        """SIGTERM; returns (exit code, seconds until exit, stdout)."""
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"still running {timeout} s after SIGTERM; stderr: {self.stderr_lines[-20:]}"
            ) from None
        took = time.monotonic() - sent
        self._reader.join(timeout=5)
        assert self.process.stdout is not None
        return code, took, self.process.stdout.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def listener_env() -> dict[str, str]:
    """The test settings, pointed at the test database that pytest created."""
    env = os.environ | {"COLLATOR_CONFIG": str(TEST_CONFIG), "COLLATOR_LOG_LEVEL": "Info"}
    env["COLLATOR_MYSQL_DB"] = str(connection.settings_dict["NAME"])
    return env


@pytest.mark.mysql_only
@pytest.mark.django_db(transaction=True)
def test_it_stops_on_sigterm_while_the_first_connection_still_fails() -> None:
    dead_url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    listener = ListenerProcess("--nats-url", dead_url, env=listener_env())
    try:
        # Two failed attempts: it is in the connect loop, 2 s apart, and not connected.
        listener.wait_for_log("event=nats_error")
        listener.wait_for_log("event=nats_error", timeout=5)
        time.sleep(2.5)
        assert sum("event=nats_error" in line for line in listener.stderr_lines) >= 2

        code, took, stdout = listener.terminate_and_wait(timeout=10)
    finally:
        listener.kill()

    assert code == 0, listener.stderr_lines[-20:]
    assert took < 3.0
    assert stdout == "stopped; counters {'messages': {}, 'rejects': {}, 'finalize': {}, 'rows': {}}\n"
    assert any("event=listener_stop_during_startup connected=False" in line for line in listener.stderr_lines)
    assert not any("event=listener_started" in line for line in listener.stderr_lines)
    assert not any("Traceback" in line for line in listener.stderr_lines)


@pytest.mark.mysql_only
@pytest.mark.django_db(transaction=True)
def test_it_stops_on_sigterm_while_connected(nats_server: NatsServer) -> None:
    joins: list[dict[str, Any]] = []
    observer_ready = threading.Event()
    stop_observer = threading.Event()

    async def observe() -> None:
        nc = await nats.connect(servers=[nats_server.url], name="OBSERVER")

        async def on_join(msg: Any) -> None:
            joins.append(json.loads(msg.data))

        await nc.subscribe(SUBJECT_CLUSTER, cb=on_join)
        await nc.flush()
        observer_ready.set()
        while not stop_observer.is_set():
            await asyncio.sleep(0.05)
        await nc.drain()

    observer = threading.Thread(target=asyncio.run, args=(observe(),), daemon=True)
    observer.start()
    assert observer_ready.wait(timeout=10)
    listener = ListenerProcess("--nats-url", nats_server.url, env=listener_env())
    try:
        listener.wait_for_log("event=listener_started node_id=COLLATOR-TEST")
        deadline = time.monotonic() + 10
        while not joins and time.monotonic() < deadline:
            time.sleep(0.05)

        code, took, stdout = listener.terminate_and_wait(timeout=15)
    finally:
        listener.kill()
        stop_observer.set()
        observer.join(timeout=10)

    assert code == 0, listener.stderr_lines[-20:]
    assert took < 5.0
    assert [j["sender"]["NodeID"] for j in joins] == ["COLLATOR-TEST"]
    assert stdout.startswith("stopped; counters ")
    assert any("event=listener_stopped node_id=COLLATOR-TEST" in line for line in listener.stderr_lines)
    assert not any("listener_stop_during_startup" in line for line in listener.stderr_lines)
    assert not any("Traceback" in line for line in listener.stderr_lines)


# --- a Nats block that cannot be used: the listener refuses, the rest still runs ------------


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_it_refuses_to_start_with_the_shipped_example_config(tmp_path: Path) -> None:
    """config/ibpcollator.example.json leaves Nats.Pass as __SET_ME__ (DECISIONS 22)."""
    env = os.environ | {
        "COLLATOR_CONFIG": str(REPO_ROOT / "config" / "ibpcollator.example.json"),
        "COLLATOR_MYSQL_PASS": "set-by-env",  # only the Nats block is left unset
        "COLLATOR_WORK_DIR": str(tmp_path),
    }
    env.pop("COLLATOR_NATS_PASS", None)

    listener = run_manage("run_nats_listener", env=env)
    web_check = run_manage("check", env=env)

    assert listener.returncode == 1
    assert listener.stderr == (
        "config error: Nats.Pass is still __SET_ME__: set it in the config file or in COLLATOR_NATS_PASS\n"
    )
    assert listener.stdout == ""
    # The web server and the commands that do not use NATS are not stopped by it.
    assert web_check.returncode == 0, web_check.stderr
    assert web_check.stdout == "System check identified no issues (0 silenced).\n"


def test_it_accepts_the_example_nats_block_once_the_password_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLLATOR_NATS_PASS", "set-by-env")
    for name in ("COLLATOR_NATS_NODE_ID", "COLLATOR_NATS_URL", "COLLATOR_NATS_USER"):
        monkeypatch.delenv(name, raising=False)
    example = load_local_config(REPO_ROOT / "config" / "ibpcollator.example.json")

    config = listener_config_from_settings(SimpleNamespace(COLLATOR=example))

    assert (config.node_id, config.user, config.password) == ("COLLATOR-01", "collator", "set-by-env")
    assert config.servers == ("nats://nats1.example.org:4222", "nats://nats2.example.org:4222")


def write_config(tmp_path: Path, nats_block: dict[str, str]) -> Path:
    raw = json.loads(TEST_CONFIG.read_text())
    raw["System"]["WorkDir"] = str(tmp_path / "work")
    raw["Nats"] = nats_block
    path = tmp_path / "ibpcollator.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(
    ("nats_block", "message"),
    [
        (
            {"NodeID": "", "Url": "nats://127.0.0.1:4222"},
            "Nats.NodeID is empty: it names this collator on the bus and must be set (nats-protocol §3)",
        ),
        (
            {"Url": "nats://127.0.0.1:4222"},
            "Nats.NodeID is empty: it names this collator on the bus and must be set (nats-protocol §3)",
        ),
        (
            {"NodeID": "__SET_ME__", "Url": "__SET_ME__"},
            "Nats.NodeID is still __SET_ME__: set it in the config file or in COLLATOR_NATS_NODE_ID; "
            "Nats.Url is still __SET_ME__: set it in the config file or in COLLATOR_NATS_URL",
        ),
        (
            {"NodeID": "COLLATOR-01", "Url": "nats://127.0.0.1:4222", "User": "__SET_ME__", "Pass": "__SET_ME__"},
            "Nats.User is still __SET_ME__: set it in the config file or in COLLATOR_NATS_USER; "
            "Nats.Pass is still __SET_ME__: set it in the config file or in COLLATOR_NATS_PASS",
        ),
        (
            {"NodeID": "COLLATOR.01", "Url": "nats://127.0.0.1:4222"},
            "Nats.NodeID 'COLLATOR.01' cannot be part of a NATS subject (§3)",
        ),
    ],
    ids=["empty-node-id", "missing-node-id", "set-me-node-id-and-url", "set-me-credentials", "dot-in-node-id"],
)
def test_it_refuses_a_nats_block_it_cannot_use_with_one_line_naming_the_field(
    tmp_path: Path, nats_block: dict[str, str], message: str
) -> None:
    env = os.environ | {"COLLATOR_CONFIG": str(write_config(tmp_path, nats_block))}
    for name in ("COLLATOR_NATS_NODE_ID", "COLLATOR_NATS_URL", "COLLATOR_NATS_USER", "COLLATOR_NATS_PASS"):
        env.pop(name, None)

    result = run_manage("run_nats_listener", env=env)

    assert result.returncode == 1
    assert result.stderr == f"config error: {message}\n"
    assert result.stdout == ""
