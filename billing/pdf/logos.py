"""Logos for the PDF headers: the IBP logo from disk, member logos fetched once and cached.

A logo is decoration: whatever goes wrong (404, HTML, a huge or slow answer, a broken image,
a private address), the PDF is rendered without it and one log line says why. Limits
(settings): BILLING_LOGO_TIMEOUT_SECONDS (10, a deadline for the whole download),
BILLING_LOGO_MAX_BYTES (5 MiB), only `image/*` answers, http(s) only, and no private,
loopback or link-local addresses unless BILLING_LOGO_ALLOW_PRIVATE_HOSTS: True for any, or a
list of `host` / `host:port` entries (tests use a local server). The rule holds for every
redirect too: each hop is checked before it is followed, so a public URL cannot bounce the
fetch to 169.254.169.254 or an internal service. Every logo is converted to a small PNG
with Pillow, so the cache never holds a format the PDF cannot read. A failure is remembered
for BILLING_LOGO_RETRY_SECONDS (1 day), so one slow host does not add 10 s to every
statement of a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import ipaddress
import logging
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from billing.rendering import billing_dir, file_name_sanitise, file_write_atomic

logger = logging.getLogger("billing.pdf")

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_RETRY_SECONDS = 86400
MAX_PIXELS = 480  # the header shows a logo at most 4 cm wide: 480 px is 300 dpi
_CHUNK = 64 * 1024


class LogoError(Exception):
    """Why a logo was not used (for the log line)."""


def logo_timeout() -> float:
    return float(getattr(settings, "BILLING_LOGO_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS))


def logo_max_bytes() -> int:
    return int(getattr(settings, "BILLING_LOGO_MAX_BYTES", DEFAULT_MAX_BYTES))


def logo_cache_dir() -> Path:
    return billing_dir() / "member_logos"


def _cache_stem(member_key: str) -> str:
    # The sanitised key is readable; the hash keeps "A B" and "A_B" apart.
    digest = hashlib.sha256(member_key.encode()).hexdigest()[:10]
    return f"{file_name_sanitise(member_key)[:80]}-{digest}"


def _png_small(data: bytes) -> bytes:
    """Decode any image Pillow knows and write it as a PNG at most MAX_PIXELS on a side."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > 40_000_000:
                raise LogoError(f"image too large ({image.width}x{image.height} px)")
            image.load()
            converted = image.convert("RGBA")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as exc:
        raise LogoError(f"not a readable image: {exc}") from None
    converted.thumbnail((MAX_PIXELS, MAX_PIXELS))
    out = io.BytesIO()
    converted.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _private_allowed(host: str, port: int) -> bool:
    allowed = getattr(settings, "BILLING_LOGO_ALLOW_PRIVATE_HOSTS", False)
    if isinstance(allowed, list | tuple | set | frozenset):
        return host in allowed or f"{host}:{port}" in allowed
    return bool(allowed)


def _check_host(url: str) -> None:
    """Refuse a URL that is not http(s), or whose host resolves to any non-public address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LogoError(f"only http(s) URLs are fetched, not {url[:80]!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise LogoError(f"bad port in {url[:80]!r}") from None
    if _private_allowed(parts.hostname, port):
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, port)
    except OSError as exc:
        raise LogoError(f"cannot resolve host: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise LogoError(f"{parts.hostname} resolves to a non-public address ({address})")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """urllib follows redirects by itself: check each hop's URL as the first one was."""

    max_redirections = 5

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        _check_host(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_CheckedRedirects)


def _socket_timeout(response: object, seconds: float) -> None:
    """Bound the next read by what is left of the deadline (urllib's timeout is per read, so a
    server trickling a byte at a time would otherwise go on for ever)."""
    with contextlib.suppress(AttributeError):
        response.fp.raw._sock.settimeout(seconds)  # type: ignore[attr-defined]


def logo_download(url: str, *, timeout: float | None = None, max_bytes: int | None = None) -> bytes:
    """The raw bytes of an image URL, within the limits, or LogoError."""
    timeout = logo_timeout() if timeout is None else timeout
    max_bytes = logo_max_bytes() if max_bytes is None else max_bytes
    deadline = time.monotonic() + timeout
    _check_host(url)
    headers = {"User-Agent": "ibp-collator-billing/1", "Accept": "image/*"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) only, checked above
    try:
        with _opener.open(request, timeout=timeout) as response:  # every hop checked (_CheckedRedirects)
            content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if not content_type.startswith("image/"):
                raise LogoError(f"content type {content_type or 'absent'!r} is not image/*")
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise LogoError(f"{length} bytes is over the {max_bytes}-byte cap")
            chunks: list[bytes] = []
            size = 0
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LogoError(f"download took more than {timeout:g} s")
                _socket_timeout(response, remaining)
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise LogoError(f"more than the {max_bytes}-byte cap")
                chunks.append(chunk)
    except LogoError:
        raise
    except urllib.error.HTTPError as exc:
        raise LogoError(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LogoError(f"fetch failed: {reason}") from None
    return b"".join(chunks)


def member_logo_path(*, member_key: str, url: str) -> Path | None:
    """The cached PNG of a member's logo, fetched the first time; None when there is none.

    Never raises: a logo must not fail a PDF.
    """
    url = (url or "").strip()
    if not url:
        return None
    folder = logo_cache_dir()
    stem = _cache_stem(member_key)
    # The URL is part of the cache key: a member that changes its logo gets the new one.
    url_tag = hashlib.sha256(url.encode()).hexdigest()[:8]
    png = folder / f"{stem}-{url_tag}.png"
    failed = folder / f"{stem}-{url_tag}.failed"
    if png.exists():
        return png
    retry = float(getattr(settings, "BILLING_LOGO_RETRY_SECONDS", DEFAULT_RETRY_SECONDS))
    try:
        if failed.exists() and time.time() - failed.stat().st_mtime < retry:
            return None
    except OSError:
        pass
    started = time.monotonic()
    try:
        data = _png_small(logo_download(url))
        file_write_atomic(png, data)
        failed.unlink(missing_ok=True)
        logger.info(
            "event=member_logo_cached member=%r bytes=%d seconds=%.2f",
            member_key,
            len(data),
            time.monotonic() - started,
        )
        return png
    except Exception as exc:
        logger.warning(
            "event=member_logo_skipped member=%r reason=%r seconds=%.2f",
            member_key,
            str(exc),
            time.monotonic() - started,
        )
        try:
            folder.mkdir(parents=True, exist_ok=True)
            failed.write_text(f"{url}\n{exc}\n", encoding="utf-8")
        except OSError:
            pass
        return None


def _ibp_logo_candidates() -> list[Path]:
    """Where the reference looks for ibp.png (reports §2), plus the setting BILLING_IBP_LOGO."""
    work = Path(settings.WORK_DIR)
    configured = getattr(settings, "BILLING_IBP_LOGO", "")
    candidates = [Path(configured)] if configured else []
    for base in (work, work / "tmp"):
        candidates += [
            base / "public" / "static" / "imgs" / "ibp.png",
            base / "ibp.png",
            base.parent / "assets" / "ibp.png",
            base.parent / "ibp.png",
        ]
    candidates.append(Path("/opt/ibp-geodns/assets/ibp.png"))
    return candidates


def ibp_logo_path() -> Path | None:
    """A small PNG of the IBP logo (the original is 3862 px, 2.2 MB: not embedded as it is),
    made once per source file; None when no logo file exists (the header shows text)."""
    for candidate in _ibp_logo_candidates():
        try:
            if not candidate.is_file():
                continue
            stat = candidate.stat()
            tag = hashlib.sha256(f"{candidate}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
            small = billing_dir() / "member_logos" / f"_ibp-{tag}.png"
            if not small.exists():
                file_write_atomic(small, _png_small(candidate.read_bytes()))
            return small
        except (OSError, LogoError) as exc:
            logger.warning("event=ibp_logo_skipped path=%s reason=%r", candidate, str(exc))
    return None
