"""A real nats-server for the tests: its own process, a free port, JetStream, a temp store.

Registered in tests/conftest.py through `pytest_plugins`. Each test that asks for
`nats_server` gets a fresh server, so subjects never clash with other runs on :4222.
`NatsServer.start` is also what the benchmark uses.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def nats_server_binary() -> str:
    found = shutil.which("nats-server") or ("/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
    if found is None:
        raise RuntimeError("nats-server not found on PATH or at /usr/sbin/nats-server")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class NatsServer:
    process: subprocess.Popen[bytes]
    port: int
    store_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, *, max_payload: int = 1024 * 1024, jetstream: bool = True) -> NatsServer:
        store_dir = Path(tempfile.mkdtemp(prefix="nats-test-"))
        port = free_port()
        config = store_dir / "nats.conf"
        lines = [f"listen: 127.0.0.1:{port}", f"max_payload: {max_payload}", "max_pending: 1GB"]
        if jetstream:
            lines.append(f'jetstream {{ store_dir: "{store_dir / "js"}" }}')
        config.write_text("\n".join(lines) + "\n")
        log_path = store_dir / "nats.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([nats_server_binary(), "-c", str(config)], stdout=log, stderr=log)
        server = cls(process=process, port=port, store_dir=store_dir, log_path=log_path)
        server.wait_ready()
        return server

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    if sock.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.store_dir, ignore_errors=True)


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A fresh nats-server (1 MiB max_payload, the NATS default) for one test."""
    server = NatsServer.start(max_payload=int(os.environ.get("TEST_NATS_MAX_PAYLOAD", 1024 * 1024)))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_server_large() -> Iterator[NatsServer]:
    """A nats-server that accepts 8 MiB messages, to send a reply the collator must refuse."""
    server = NatsServer.start(max_payload=8 * 1024 * 1024)
    try:
        yield server
    finally:
        server.stop()
