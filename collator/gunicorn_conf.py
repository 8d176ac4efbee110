"""gunicorn settings for the API (`make serve`; `gunicorn -c collator/gunicorn_conf.py collator.wsgi`).

- Binds `CollatorApi.ListenAddress:ListenPort` of the seed's JSON config (COLLATOR_CONFIG),
  with an IPv6 literal bracketed (quirk Q22).
- HTTPS when SSL_CERT and SSL_KEY are both set (api-contract §1.2, DECISIONS 21).
- Timeouts everywhere (quirk Q21), access log lines with the response time in ms.

Certificate renewal: gunicorn's sync and gthread workers wrap every accepted connection
with `ssl_context(conf)` (gunicorn/sock.py). By default that builds a new SSLContext per
connection, reading and parsing the PEM files each time, which breaks handshakes while a
renewal is half-written. The `ssl_context` hook below instead keeps one context per worker
and rebuilds it when either file's mtime or size changes (checked at most every
CERT_CHECK_SECONDS); a pair that fails to load is logged and the previous context is kept,
as the reference does. New connections get the new certificate within CERT_CHECK_SECONDS;
connections already open keep theirs, so nothing in flight is dropped.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from collator.local_config import load_local_config

_api = load_local_config().api
_host = _api.listen_address.strip() or "0.0.0.0"
bind = [f"[{_host}]:{_api.listen_port}" if ":" in _host else f"{_host}:{_api.listen_port}"]

wsgi_app = "collator.wsgi:application"
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", str(min(2 * multiprocessing.cpu_count() + 1, 8))))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
# Long comma lists (80 domains) fit; gunicorn's ceiling for the request line is 8190.
limit_request_line = 8190
max_requests = 10000
max_requests_jitter = 1000

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
access_log_format = (
    'event=http_request remote=%(h)s method=%(m)s path="%(U)s" query="%(q)s" status=%(s)s '
    'bytes=%(B)s duration_ms=%(M)s agent="%(a)s"'
)

_cert = os.environ.get("SSL_CERT", "").strip()
_key = os.environ.get("SSL_KEY", "").strip()
if _cert and _key:
    certfile = _cert
    keyfile = _key

CERT_CHECK_SECONDS = float(os.environ.get("SSL_RELOAD_CHECK_SECONDS", "10"))
logger = logging.getLogger("collator.tls")


class ReloadingContext:
    """One SSLContext, rebuilt when the certificate or key file changes on disk."""

    def __init__(self, build: Callable[[], ssl.SSLContext], paths: tuple[str, ...], check_seconds: float) -> None:
        self.build = build
        self.paths = paths
        self.check_seconds = check_seconds
        self.lock = threading.Lock()
        self.context: ssl.SSLContext | None = None
        self.loaded_stamp: tuple[tuple[int, int], ...] | None = None
        self.next_check = 0.0

    def _stamp(self) -> tuple[tuple[int, int], ...] | None:
        try:
            stats = [os.stat(path) for path in self.paths]
        except OSError:
            return None  # mid-rename: skip this check, as the reference does
        return tuple((s.st_mtime_ns, s.st_size) for s in stats)

    def get(self) -> ssl.SSLContext:
        with self.lock:
            now = time.monotonic()
            if self.context is not None and now < self.next_check:
                return self.context
            self.next_check = now + self.check_seconds
            stamp = self._stamp()
            if self.context is None or (stamp is not None and stamp != self.loaded_stamp):
                try:
                    self.context = self.build()
                    self.loaded_stamp = stamp
                    logger.info("event=tls_certificate_loaded cert=%s", self.paths[0])
                except (OSError, ssl.SSLError) as exc:
                    if self.context is None:
                        raise
                    logger.error("event=tls_certificate_reload_failed cert=%s error=%s", self.paths[0], exc)
            return self.context


_reloading: ReloadingContext | None = None


def ssl_context(conf: Any, default_ssl_context_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    global _reloading
    if _reloading is None:
        _reloading = ReloadingContext(default_ssl_context_factory, (conf.certfile, conf.keyfile), CERT_CHECK_SECONDS)
    return _reloading.get()


def post_fork(server: Any, worker: Any) -> None:
    # Each worker builds its own context (and lock) after the fork.
    global _reloading
    _reloading = None
