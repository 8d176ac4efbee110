"""A real local HTTP server that plays a Matrix homeserver (the outside world in our tests).

It speaks the three client-server endpoints the collator uses (nats-protocol §11.6):
password login, send a room event, and whoami. It records every request with its arrival
time, issues and checks access tokens like a homeserver (an unknown token gets 401
M_UNKNOWN_TOKEN), de-duplicates a repeated transaction id like Synapse does, and can be
told to answer the next calls of an endpoint with scripted failures (429 with
`retry_after_ms` or a `Retry-After` header, 500, a closed connection, an answer lost after the request was applied).
`go_down()` closes the listening socket (connections are refused, as with a homeserver that
is down) and `come_back()` listens again on the same port with the same state.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

LOGIN = "login"
SEND = "send"
WHOAMI = "whoami"

DROP = object()  # scripted answer: close the connection without a response
LOST = object()  # scripted answer: apply the request as usual, then close without answering


@dataclass(frozen=True)
class Delay:
    """Scripted answer: wait `seconds` before answering `status` / `body` (for timeouts)."""

    seconds: float
    status: int = 200
    body: Any = None


@dataclass(frozen=True)
class WithHeaders:
    """Scripted answer: `status` / `body` with extra response headers (e.g. Retry-After)."""

    status: int
    body: Any
    headers: dict[str, str]


@dataclass(frozen=True)
class RecordedRequest:
    endpoint: str  # login, send, whoami or other
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() on arrival
    room_id: str = ""
    txn_id: str = ""
    status: int = 0  # what the server answered

    @property
    def token(self) -> str:
        auth = self.headers.get("authorization", "")
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""


@dataclass
class _State:
    user_id: str
    password: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[RecordedRequest] = field(default_factory=list)
    scripts: dict[str, deque[Any]] = field(default_factory=lambda: defaultdict(deque))
    tokens: dict[str, str] = field(default_factory=dict)  # token → device id
    devices: set[str] = field(default_factory=set)
    txns: dict[tuple[str, str], str] = field(default_factory=dict)  # (device, txn) → event id
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # event id → content
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))


class FakeMatrixServer:
    """`with FakeMatrixServer() as server:` → `server.url` is the homeserver URL."""

    def __init__(self, *, user_id: str = "@ibp-bot:fake.local", password: str = "s3cret") -> None:  # noqa: S107 (a test account)
        self.state = _State(user_id=user_id, password=password)
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                return

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def do_GET(self) -> None:
                self._handle("GET")

            def _handle(self, method: str) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = raw.decode("utf-8", "replace")
                path = self.path.split("?", 1)[0]
                endpoint, room_id, txn_id = _route(method, path)
                with state.lock:
                    scripted = state.scripts[endpoint].popleft() if state.scripts[endpoint] else None
                    delay = 0.0
                    extra_headers: dict[str, str] = {}
                    if isinstance(scripted, WithHeaders):
                        extra_headers, scripted = scripted.headers, (scripted.status, scripted.body)
                    if isinstance(scripted, Delay):
                        delay, scripted = scripted.seconds, (scripted.status, scripted.body)
                    if scripted is DROP:
                        status, answer = 0, None
                    elif scripted is LOST:
                        status, answer = _answer(state, endpoint, body, self.headers, room_id, txn_id)
                    elif scripted is not None:
                        status, answer = scripted
                    else:
                        status, answer = _answer(state, endpoint, body, self.headers, room_id, txn_id)
                    state.requests.append(
                        RecordedRequest(
                            endpoint=endpoint,
                            method=method,
                            path=path,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=body,
                            at=arrived,
                            room_id=room_id,
                            txn_id=txn_id,
                            status=status,
                        )
                    )
                if delay:
                    time.sleep(delay)
                if scripted is DROP or scripted is LOST:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                payload = json.dumps(answer).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in extra_headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

        self._handler = Handler
        self._server = self._listen(("127.0.0.1", 0))
        self._address = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-matrix", daemon=True)
        self.is_up = True

    def _listen(self, address: tuple[str, int]) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(address, self._handler)
        server.daemon_threads = True
        return server

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._address
        return f"http://{host}:{port}"

    def start(self) -> FakeMatrixServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.is_up:
            self.go_down()

    def go_down(self) -> None:
        """Stop listening: every connection is refused until `come_back()`."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.is_up = False

    def come_back(self) -> None:
        """Listen again on the same port; accounts, tokens and events are kept."""
        self._server = self._listen(self._address)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-matrix", daemon=True)
        self._thread.start()
        self.is_up = True

    def __enter__(self) -> FakeMatrixServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- control and inspection -------------------------------------------------------------

    def script(self, endpoint: str, *answers: Any) -> None:
        """Answer the next calls of `endpoint` with these `(status, body)` pairs (or DROP)."""
        with self.state.lock:
            self.state.scripts[endpoint].extend(answers)

    def revoke_tokens(self) -> None:
        with self.state.lock:
            self.state.tokens.clear()

    def requests(self, endpoint: str | None = None) -> list[RecordedRequest]:
        with self.state.lock:
            return [r for r in self.state.requests if endpoint is None or r.endpoint == endpoint]

    def sent(self) -> list[RecordedRequest]:
        """Send requests the server accepted (200), in arrival order."""
        return [r for r in self.requests(SEND) if r.status == 200]

    def wait_for(self, count: int, *, endpoint: str = SEND, accepted: bool = True, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.sent() if (endpoint == SEND and accepted) else self.requests(endpoint)
            if len(found) >= count:
                return
            time.sleep(0.01)
        raise AssertionError(f"expected {count} {endpoint} requests, saw {len(self.requests(endpoint))}")


def _route(method: str, path: str) -> tuple[str, str, str]:
    parts = path.split("/")
    if method == "POST" and path == "/_matrix/client/v3/login":
        return LOGIN, "", ""
    if method == "GET" and path == "/_matrix/client/v3/account/whoami":
        return WHOAMI, "", ""
    # /_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}
    if method == "PUT" and len(parts) == 9 and parts[1:5] == ["_matrix", "client", "v3", "rooms"]:
        if parts[6] != "send" or parts[7] != "m.room.message":
            return "other", "", ""
        return SEND, unquote(parts[5]), unquote(parts[8])
    return "other", "", ""


def _answer(
    state: _State, endpoint: str, body: Any, headers: Any, room_id: str, txn_id: str
) -> tuple[int, dict[str, Any]]:
    if endpoint == LOGIN:
        if not isinstance(body, dict) or body.get("type") != "m.login.password":
            return 400, {"errcode": "M_UNKNOWN", "error": "bad login type"}
        user = (body.get("identifier") or {}).get("user")
        if user not in {state.user_id, state.user_id[1:].split(":", 1)[0]} or body.get("password") != state.password:
            return 403, {"errcode": "M_FORBIDDEN", "error": "Invalid username or password"}
        device = body.get("device_id") or f"DEV{next(state.counter)}"
        token = f"tok-{device}-{next(state.counter)}"
        state.devices.add(device)
        state.tokens[token] = device
        return 200, {"user_id": state.user_id, "access_token": token, "device_id": device}
    auth = headers.get("Authorization", "")
    token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
    if token not in state.tokens:
        return 401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Unrecognised access token"}
    if endpoint == WHOAMI:
        return 200, {"user_id": state.user_id, "device_id": state.tokens[token]}
    if endpoint == SEND:
        if not isinstance(body, dict) or "body" not in body:
            return 400, {"errcode": "M_BAD_JSON", "error": "content needs a body"}
        key = (state.tokens[token], txn_id)
        if key in state.txns:  # a retried transaction gets the first answer again
            return 200, {"event_id": state.txns[key]}
        event_id = f"$event{next(state.counter)}:fake.local"
        state.txns[key] = event_id
        state.events[event_id] = body
        return 200, {"event_id": event_id}
    return 404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}
