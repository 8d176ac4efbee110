"""A small Matrix client: password login, send and edit a room message (nats-protocol §11).

What it does better than the Go reference (§11.7, §13 N15):
- the access token and device id are kept in the DB (MatrixSession) and reused after a
  restart; when the server rejects the token we log in again *with the same device id*,
  so the account does not collect one device per start;
- HTTP 429 waits for the server's `retry_after_ms`; 5xx, timeouts and network errors are
  retried with exponential back-off; other 4xx answers are permanent and raised at once;
- one transaction id per logical message, reused by every retry, so a retry after a lost
  response cannot post the message twice (the homeserver de-duplicates by txn id). A
  caller that retries a message later (metrics/alerts.py requeues an alert while the
  homeserver is down) passes its own `txn_id` so that those retries are de-duplicated too.

The retries here are bounded (`max_attempts`), so one call returns in bounded time; the
alert sender is what keeps an alert until the homeserver is back.

HTTP is plain urllib (no extra dependency) run in an executor, because the caller is the
asyncio alert sender; every wait between attempts is an `asyncio.sleep`, so stopping the
sender cancels a retry at once.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from collator.local_config import SET_ME, MatrixConfig, unset_values

logger = logging.getLogger(__name__)

T = TypeVar("T")

LOGIN_PATH = "/_matrix/client/v3/login"
SEND_PATH = "/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"
DEVICE_DISPLAY_NAME = "IBP Collator"


class MatrixError(Exception):
    """Base of every Matrix failure."""


class MatrixConfigError(MatrixError):
    """The Matrix block is enabled but unusable (`__SET_ME__`, a missing field, a room alias)."""


class MatrixRequestError(MatrixError):
    """The homeserver refused the request for good (a 4xx other than 401/429)."""

    def __init__(self, message: str, *, status: int, errcode: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.errcode = errcode


class MatrixUnavailableError(MatrixError):
    """Still failing after every retry (5xx, timeouts, network errors, rate limits)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Defaults follow §11.1 (15 s login) and §11.7 (10 s send)."""

    max_attempts: int = 6  # for 5xx, timeouts and network errors
    max_rate_limited: int = 20  # 429 answers tolerated for one request
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    retry_after_max: float = 300.0  # never wait longer than this on a server's say-so
    send_timeout: float = 10.0
    login_timeout: float = 15.0

    def backoff(self, attempt: int) -> float:
        """Delay after the `attempt`-th failure (1-based): initial × 2^(attempt−1), capped."""
        return min(self.backoff_max, self.backoff_initial * (2 ** max(0, attempt - 1)))


@dataclass(frozen=True)
class MatrixResponse:
    status: int  # 0 when no HTTP answer came back (timeout, refused, reset)
    body: Mapping[str, Any]
    retry_after: float | None = None  # seconds, from retry_after_ms or Retry-After
    error: str = ""

    @property
    def errcode(self) -> str:
        return str(self.body.get("errcode", "")) if isinstance(self.body, Mapping) else ""


@dataclass(frozen=True)
class MatrixSessionState:
    user_id: str
    device_id: str
    access_token: str


class SessionStore(Protocol):
    def load(self) -> MatrixSessionState | None: ...

    def save(self, state: MatrixSessionState) -> None: ...


class DatabaseSessionStore:
    """The session of one (homeserver, username) in the `matrix_session` table."""

    def __init__(self, *, homeserver_url: str, username: str) -> None:
        self.homeserver_url = homeserver_url
        self.username = username

    def load(self) -> MatrixSessionState | None:
        from metrics.matrix_models import MatrixSession

        row = MatrixSession.objects.filter(homeserver_url=self.homeserver_url, username=self.username).first()
        if row is None or not (row.access_token or row.device_id):
            return None
        return MatrixSessionState(user_id=row.user_id, device_id=row.device_id, access_token=row.access_token)

    def save(self, state: MatrixSessionState) -> None:
        from metrics.matrix_models import MatrixSession

        MatrixSession.objects.update_or_create(
            homeserver_url=self.homeserver_url,
            username=self.username,
            defaults={
                "user_id": state.user_id,
                "device_id": state.device_id,
                "access_token": state.access_token,
                "logged_in_at": datetime.now(UTC),
            },
        )


def new_txn_id() -> str:
    """A transaction id for one logical message (§11.6: any unique string)."""
    return f"ibp-{uuid.uuid4().hex}"


def matrix_config_validate(config: MatrixConfig) -> bool:
    """True when Matrix is configured, False when it is off; raises when it is half-configured.

    §11.1: no `HomeServerURL` means Matrix is off. Once it is set, `__SET_ME__` anywhere
    is an error (DECISIONS 22), and so is an empty field or a room alias: REF silently
    disabled Matrix in those cases, and an operator only found out when no alert came.
    """
    if not config.enabled:
        return False
    unset = unset_values(config)
    if unset:
        raise MatrixConfigError(f"Matrix.{', Matrix.'.join(sorted(unset))} is still {SET_ME}")
    labels = {
        "homeserver_url": "HomeServerURL",
        "username": "Username",
        "password": "Password",
        "room_id": "RoomID",
    }
    empty = [labels[name] for name in labels if not getattr(config, name)]
    if empty:
        raise MatrixConfigError(f"Matrix.HomeServerURL is set but Matrix.{', Matrix.'.join(empty)} is empty")
    if not config.homeserver_url.startswith(("http://", "https://")):
        raise MatrixConfigError(f"Matrix.HomeServerURL must be an http(s) URL, got {config.homeserver_url!r}")
    if not (config.room_id.startswith("!") and ":" in config.room_id):
        # No alias resolution and no join (§11.1): the bot must already be in the room.
        raise MatrixConfigError(f"Matrix.RoomID must be a room id like !abc:server, got {config.room_id!r}")
    return True


def edit_content(original_event_id: str, content: Mapping[str, Any]) -> dict[str, Any]:
    """An `m.replace` edit of `original_event_id` showing `content` (§11.4)."""
    new_content = {key: content[key] for key in ("msgtype", "body", "format", "formatted_body")}
    return {
        **new_content,
        "m.new_content": dict(new_content),
        "m.relates_to": {"rel_type": "m.replace", "event_id": original_event_id},
    }


class MatrixClient:
    """Login, send and edit for one room. Not thread-safe: one sender task uses it."""

    def __init__(
        self,
        *,
        homeserver_url: str,
        username: str,
        password: str,
        room_id: str,
        store: SessionStore,
        policy: RetryPolicy | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.homeserver_url = homeserver_url.rstrip("/")
        self.username = username
        self._password = password
        self.room_id = room_id
        self.store = store
        self.policy = policy or RetryPolicy()
        self._executor = executor
        self.session: MatrixSessionState | None = None
        self._session_loaded = False

    @classmethod
    def from_config(
        cls, config: MatrixConfig, *, policy: RetryPolicy | None = None, executor: Executor | None = None
    ) -> MatrixClient | None:
        """A client for the configured account, or None when Matrix is off."""
        if not matrix_config_validate(config):
            return None
        return cls(
            homeserver_url=config.homeserver_url,
            username=config.username,
            password=config.password,
            room_id=config.room_id,
            store=DatabaseSessionStore(homeserver_url=config.homeserver_url.rstrip("/"), username=config.username),
            policy=policy,
            executor=executor,
        )

    # --- public -------------------------------------------------------------------------

    async def send_message(self, content: Mapping[str, Any], *, txn_id: str | None = None) -> str:
        """Post a new `m.room.message`; returns its event id.

        Give the same `txn_id` to every later retry of one message: the homeserver answers
        a repeated transaction with the first event id instead of posting it again.
        """
        return await self._send_room_event(dict(content), txn_id=txn_id)

    async def edit_message(
        self, original_event_id: str, content: Mapping[str, Any], *, txn_id: str | None = None
    ) -> str:
        """Replace the text of `original_event_id`; returns the edit's own event id."""
        return await self._send_room_event(edit_content(original_event_id, content), txn_id=txn_id)

    async def ensure_login(self) -> MatrixSessionState:
        if self.session and self.session.access_token:
            return self.session
        if not self._session_loaded:
            stored = await self._blocking(self.store.load)
            self._session_loaded = True
            if stored and stored.access_token:
                self.session = stored
                logger.info("event=matrix_session_reused device_id=%s", stored.device_id)
                return stored
            self.session = stored  # may hold a device id to reuse, without a token
        return await self.login()

    async def login(self) -> MatrixSessionState:
        """Password login, retried with back-off; reuses the known device id."""
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": self.username},
            "password": self._password,
            "initial_device_display_name": DEVICE_DISPLAY_NAME,
        }
        if self.session and self.session.device_id:
            body["device_id"] = self.session.device_id
        failures = 0
        rate_limited = 0
        while True:
            response = await self._blocking(self._http, "POST", LOGIN_PATH, body, None, self.policy.login_timeout)
            if response.status == 200 and response.body.get("access_token"):
                state = MatrixSessionState(
                    user_id=str(response.body.get("user_id", "")),
                    device_id=str(response.body.get("device_id", body.get("device_id", ""))),
                    access_token=str(response.body["access_token"]),
                )
                self.session = state
                await self._blocking(self.store.save, state)
                logger.info("event=matrix_login_ok user_id=%s device_id=%s", state.user_id, state.device_id)
                return state
            if response.status == 429:
                rate_limited += 1
                if rate_limited > self.policy.max_rate_limited:
                    raise MatrixUnavailableError(f"login still rate-limited after {rate_limited} tries")
                delay = self._retry_after(response, rate_limited)
            else:
                # A wrong password (403) is retried too: it is often a homeserver hiccup,
                # and an operator fixing the account should not have to restart us.
                failures += 1
                logger.warning(
                    "event=matrix_login_failed status=%s errcode=%s error=%r attempt=%s",
                    response.status,
                    response.errcode,
                    response.error or response.body.get("error", ""),
                    failures,
                )
                if failures >= self.policy.max_attempts:
                    raise MatrixUnavailableError(f"login failed {failures} times, last status {response.status}")
                delay = self.policy.backoff(failures)
            await asyncio.sleep(delay)

    # --- internals ----------------------------------------------------------------------

    async def _send_room_event(self, content: dict[str, Any], *, txn_id: str | None = None) -> str:
        # One txn id for every retry of this message: the server de-duplicates on it.
        txn_id = txn_id or new_txn_id()
        path = SEND_PATH.format(room=quote(self.room_id, safe=""), txn=quote(txn_id, safe=""))
        failures = 0
        rate_limited = 0
        relogged = False
        while True:
            session = await self.ensure_login()
            response = await self._blocking(
                self._http, "PUT", path, content, session.access_token, self.policy.send_timeout
            )
            if response.status == 200 and response.body.get("event_id"):
                return str(response.body["event_id"])
            if response.status == 429:
                rate_limited += 1
                if rate_limited > self.policy.max_rate_limited:
                    raise MatrixUnavailableError(f"still rate-limited after {rate_limited} tries")
                delay = self._retry_after(response, rate_limited)
                logger.info("event=matrix_rate_limited wait_s=%.3f try=%s", delay, rate_limited)
                await asyncio.sleep(delay)
                continue
            if response.status == 401 and not relogged:
                # The token was revoked or expired: log in again, same device, and retry once.
                logger.info("event=matrix_token_rejected errcode=%s", response.errcode)
                self.session = MatrixSessionState(user_id=session.user_id, device_id=session.device_id, access_token="")
                relogged = True
                await self.login()
                continue
            if response.status == 0 or response.status >= 500 or response.status == 200:
                # 200 without an event id is a broken proxy answer; treat it as transient.
                failures += 1
                logger.warning(
                    "event=matrix_send_retry status=%s error=%r attempt=%s",
                    response.status,
                    response.error or response.body.get("error", ""),
                    failures,
                )
                if failures >= self.policy.max_attempts:
                    raise MatrixUnavailableError(f"send failed {failures} times, last status {response.status}")
                await asyncio.sleep(self.policy.backoff(failures))
                continue
            raise MatrixRequestError(
                f"homeserver refused the message: {response.status} {response.errcode} "
                f"{response.body.get('error', '')}".strip(),
                status=response.status,
                errcode=response.errcode,
            )

    def _retry_after(self, response: MatrixResponse, tries: int) -> float:
        if response.retry_after is not None and response.retry_after >= 0:
            return min(response.retry_after, self.policy.retry_after_max)
        return self.policy.backoff(tries)

    async def _blocking(self, func: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: func(*args))

    def _http(
        self, method: str, path: str, body: Mapping[str, Any] | None, token: str | None, timeout: float
    ) -> MatrixResponse:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
        request = urllib.request.Request(self.homeserver_url + path, data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        request.add_header("Accept", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (URL from config)
                return MatrixResponse(status=answer.status, body=_decode(answer.read()))
        except urllib.error.HTTPError as exc:
            payload = _decode(exc.read())
            retry_after: float | None = None
            if isinstance(payload.get("retry_after_ms"), int | float):
                retry_after = payload["retry_after_ms"] / 1000.0
            elif exc.headers:
                header = exc.headers.get("Retry-After", "").strip()
                # Delay-seconds are ASCII digits; str.isdigit() also says yes to "²", which
                # float() refuses.
                if header.isascii() and header.isdigit():
                    retry_after = float(header)
            return MatrixResponse(status=exc.code, body=payload, retry_after=retry_after)
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, refused or cut connections
            reason = getattr(exc, "reason", exc)
            return MatrixResponse(status=0, body={}, error=f"{type(exc).__name__}: {reason}")


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8")) if raw else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
