"""Member logos from a real local HTTP server: a bad logo never fails the statement PDF."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pypdf import PdfReader

from billing.models import DocumentStatus, Statement
from billing.pdf.logos import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT_SECONDS,
    LogoError,
    logo_download,
    logo_max_bytes,
    logo_timeout,
    member_logo_path,
)
from billing.services import statement_generate_month
from tests.billing.conftest import SnapshotFactory, snapshot_applied  # noqa: F401
from tests.billing.pdf_support import pdf_settings, pdf_text, utc  # noqa: F401
from tests.billing.worked_example import MEMBERS_JSON, example_files

APRIL_1 = utc(2025, 4, 1, 0, 5)


def _image(fmt: str, size: tuple[int, int] = (900, 300)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (230, 0, 122)).save(out, format=fmt)
    return out.getvalue()


class LogoServer:
    """A local HTTP server with one path per case."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.hits: list[str] = []
        self.redirects: dict[str, str] = {}  # path → Location of a 302
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                server.hits.append(self.path)
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/missing.png":
                    self._send(404, "text/html", b"<h1>not found</h1>")
                elif self.path == "/page.png":
                    self._send(200, "text/html; charset=utf-8", b"<html><body>a web page</body></html>")
                elif self.path == "/huge.png":
                    self._send(200, "image/png", b"\x89PNG" + b"\0" * (6 * 1024 * 1024))
                elif self.path == "/huge-chunked.png":
                    # No Content-Length: the cap must hold while streaming.
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.end_headers()
                    try:
                        for _ in range(7 * 16):
                            self.wfile.write(b"\0" * 65536)
                    except OSError:
                        pass
                elif self.path == "/hang.png":
                    server.release.wait(30)  # answers nothing until the test ends
                elif self.path == "/broken.png":
                    self._send(200, "image/png", b"\x89PNG\r\n\x1a\n but not an image")
                elif self.path == "/logo.jpg":
                    self._send(200, "image/jpeg", _image("JPEG"))
                else:
                    self._send(200, "image/png", _image("PNG"))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def logo_server() -> Iterator[LogoServer]:
    server = LogoServer()
    yield server
    server.close()


def _month_with_logo(snapshot_applied: SnapshotFactory, url: str) -> Statement:  # noqa: F811
    members = json.loads(json.dumps(MEMBERS_JSON))
    members["Alpha"]["Details"]["Logo"] = url
    snapshot_applied(example_files(members=members), applied_at=utc(2025, 2, 1))
    result = statement_generate_month(month="2025-03", now=APRIL_1)
    assert result.pdf_failures == ()
    return Statement.objects.get(member_key="Alpha", status=DocumentStatus.ISSUED)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/missing.png", "/page.png", "/huge.png", "/huge-chunked.png", "/hang.png", "/broken.png"]
)
def test_it_renders_the_statement_without_a_bad_logo(
    path: str,
    logo_server: LogoServer,
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
    settings: Any,
) -> None:
    """404, an HTML page, 6 MiB (declared, and streamed without a length), no answer at all,
    and bytes that are not an image: the PDF is written, without a logo, and the hang costs at
    most the (test-shortened) 1 s timeout, not the server's 30 s."""
    settings.BILLING_LOGO_TIMEOUT_SECONDS = 1.0
    started = time.monotonic()
    statement = _month_with_logo(snapshot_applied, logo_server.url(path))
    elapsed = time.monotonic() - started

    assert path in logo_server.hits
    assert Path(statement.pdf_path).exists() and "Alpha Nodes" in pdf_text(statement.pdf_path)
    assert not list((pdf_settings / "tmp" / "member_logos").glob("*.png"))
    assert len(list((pdf_settings / "tmp" / "member_logos").glob("*.failed"))) == 1
    assert all(not page.images for page in PdfReader(statement.pdf_path).pages)
    assert elapsed < 20  # two statements and an overview; the logo adds at most ~1 s
    if path == "/hang.png":
        # Generation minus the logo wait: the wait itself stayed near the 1 s timeout.
        before = time.monotonic()
        member_logo_path(member_key="Other", url=logo_server.url(path))
        assert 0.9 <= time.monotonic() - before < 3


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "fmt"), [("/logo.png", "PNG"), ("/logo.jpg", "JPEG")])
def test_it_caches_a_good_logo_as_a_small_png_and_embeds_it(
    path: str,
    fmt: str,
    logo_server: LogoServer,
    snapshot_applied: SnapshotFactory,  # noqa: F811
    pdf_settings: Path,  # noqa: F811
) -> None:
    """A 900×300 PNG or JPEG is stored once as a PNG of at most 480 px (480×160) and embedded;
    the second statement render uses the cache (one download in all)."""
    statement = _month_with_logo(snapshot_applied, logo_server.url(path))
    cached = list((pdf_settings / "tmp" / "member_logos").glob("*.png"))
    assert len(cached) == 1
    with Image.open(cached[0]) as image:
        assert (image.format, image.size) == ("PNG", (480, 160))
    assert any(page.images for page in PdfReader(statement.pdf_path).pages)
    member_logo_path(member_key="Alpha", url=logo_server.url(path))
    assert logo_server.hits.count(path) == 1


def test_it_defaults_to_a_10_second_timeout_and_a_5_mib_cap(settings: Any) -> None:
    for name in ("BILLING_LOGO_TIMEOUT_SECONDS", "BILLING_LOGO_MAX_BYTES"):
        if hasattr(settings, name):
            delattr(settings, name)
    assert logo_timeout() == DEFAULT_TIMEOUT_SECONDS == 10.0
    assert logo_max_bytes() == DEFAULT_MAX_BYTES == 5 * 1024 * 1024


@pytest.mark.django_db
def test_it_refuses_private_addresses_unless_allowed(settings: Any, tmp_path: Path, logo_server: LogoServer) -> None:
    """Logo URLs come from a config anyone can propose: 127.0.0.1 is refused by default (no
    request reaches the server), and non-http schemes always."""
    settings.WORK_DIR = tmp_path
    settings.BILLING_LOGO_ALLOW_PRIVATE_HOSTS = False
    assert member_logo_path(member_key="Alpha", url=logo_server.url("/logo.png")) is None
    assert logo_server.hits == []
    settings.BILLING_LOGO_ALLOW_PRIVATE_HOSTS = True
    assert member_logo_path(member_key="Beta", url="file:///etc/passwd") is None


@pytest.mark.django_db
def test_it_checks_every_redirect_hop_against_the_address_rule(
    settings: Any, tmp_path: Path, logo_server: LogoServer
) -> None:
    """Only the logo server's own host:port is allowed (standing in for a public logo host).
    Its redirects to the cloud metadata address and to another local port (an internal
    service) are refused before they are followed: no request reaches the internal server,
    and the member simply has no logo. A redirect within the allowed host is followed."""
    internal = LogoServer()
    try:
        settings.WORK_DIR = tmp_path
        settings.BILLING_LOGO_ALLOW_PRIVATE_HOSTS = [f"127.0.0.1:{logo_server.port}"]
        logo_server.redirects = {
            "/to-metadata.png": "http://169.254.169.254/latest/meta-data/",
            "/to-internal.png": internal.url("/logo.png"),
            "/to-logo.png": "/logo.png",
        }
        with pytest.raises(LogoError, match=r"^169\.254\.169\.254 resolves to a non-public address"):
            logo_download(logo_server.url("/to-metadata.png"))
        with pytest.raises(LogoError, match=r"^127\.0\.0\.1 resolves to a non-public address \(127\.0\.0\.1\)$"):
            logo_download(logo_server.url("/to-internal.png"))
        assert member_logo_path(member_key="Alpha", url=logo_server.url("/to-internal.png")) is None
        assert internal.hits == []
        assert logo_download(logo_server.url("/to-logo.png")) == _image("PNG")
        assert logo_server.hits == [
            "/to-metadata.png",
            "/to-internal.png",
            "/to-internal.png",
            "/to-logo.png",
            "/logo.png",
        ]
    finally:
        internal.close()
