"""The real gunicorn server with collator/gunicorn_conf.py: HTTPS, certificate renewal, logs.

gunicorn runs as a subprocess on a free loopback port with a self-signed certificate. The
certificate files are then replaced the way certbot does (write aside, rename over); new
connections must get the new certificate within seconds, while a connection opened before
the swap keeps working.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.collator.tls_helpers import write_certificate

REPO_ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).parent / "gunicorn"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a self-signed test certificate; we read it instead
    return context


def _common_name(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def _served_name(port: int) -> str:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        _client_context().wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return _common_name(der)


def _replace(source: Path, target: Path) -> None:
    """Write aside, then rename over: the file is never seen half-written."""
    aside = target.with_suffix(target.suffix + ".new")
    aside.write_bytes(source.read_bytes())
    os.replace(aside, target)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Path, Path, Path]]:
    port = _free_port()
    base = os.environ.get("COLLATOR_CONFIG", "")
    config = json.loads(Path(base).read_text()) if base else {}
    config["CollatorApi"] = {"ListenAddress": "127.0.0.1", "ListenPort": str(port)}
    if base:
        # Relative paths in the config (WorkDir) are resolved against its own folder.
        work_dir = config.get("System", {}).get("WorkDir")
        if work_dir and not Path(work_dir).is_absolute():
            config["System"]["WorkDir"] = str((Path(base).resolve().parent / work_dir).resolve())
    config_path = tmp_path / "collator.json"
    config_path.write_text(json.dumps(config))
    cert, key = write_certificate(tmp_path, "first")
    log_path = tmp_path / "gunicorn.log"
    env = os.environ | {
        "COLLATOR_CONFIG": str(config_path),
        "SSL_CERT": str(cert),
        "SSL_KEY": str(key),
        "SSL_RELOAD_CHECK_SECONDS": "1",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "2",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(GUNICORN), "-c", "collator/gunicorn_conf.py"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    _served_name(port)
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(log_path.read_text()) from None
                    time.sleep(0.2)
            yield port, cert, key, log_path
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_it_serves_https_and_picks_up_a_renewed_certificate(
    server: tuple[int, Path, Path, Path], tmp_path: Path
) -> None:
    port, cert, key, log_path = server
    assert _served_name(port) == "first"

    # A keep-alive connection opened before the renewal.
    before = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=_client_context())
    before.request("GET", "/api/schema?format=json")
    response = before.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["openapi"].startswith("3.")

    new_cert, new_key = write_certificate(tmp_path, "second", stem="renewed")
    _replace(new_key, key)
    _replace(new_cert, cert)

    deadline = time.monotonic() + 20
    while _served_name(port) != "second":
        assert time.monotonic() < deadline, "the renewed certificate was not picked up within 20 s"
        time.sleep(0.25)

    # The connection from before the swap is still served, on its original certificate.
    before.request("GET", "/api/schema?format=json")
    again = before.getresponse()
    assert again.status == 200
    again.read()
    assert before.sock is not None
    der = before.sock.getpeercert(binary_form=True)
    assert der is not None and _common_name(der) == "first"
    before.close()

    time.sleep(0.5)  # let the access log line reach the file
    log = log_path.read_text()
    assert 'method=GET path="/api/schema" query="format=json" status=200' in log
    assert "duration_ms=" in log


def test_it_keeps_the_old_certificate_when_a_renewal_is_broken(
    server: tuple[int, Path, Path, Path],
    tmp_path: Path,
) -> None:
    port, cert, _key, log_path = server
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    _replace(broken, cert)
    time.sleep(2.5)  # more than one check interval
    assert _served_name(port) == "first"
    assert "event=tls_certificate_reload_failed" in log_path.read_text()
