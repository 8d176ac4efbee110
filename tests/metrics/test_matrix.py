"""The Matrix client against a real local HTTP homeserver (tests/fake_matrix.py) and real DB.

Back-off delays are shortened through RetryPolicy so that each wait is measurable: a test
asserts that a retry came *at least* the required delay after the failure it follows.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from django.db import connections

from collator.local_config import MatrixConfig
from metrics.matrix import (
    DatabaseSessionStore,
    MatrixClient,
    MatrixConfigError,
    MatrixRequestError,
    MatrixUnavailableError,
    RetryPolicy,
    edit_content,
    matrix_config_validate,
)
from metrics.matrix_models import MatrixSession
from tests.fake_matrix import DROP, LOGIN, SEND, Delay, FakeMatrixServer, WithHeaders

pytestmark = pytest.mark.django_db(transaction=True)

T = TypeVar("T")
ROOM = "!alerts:fake.local"
FAST = RetryPolicy(backoff_initial=0.1, backoff_max=1.0, max_attempts=4, send_timeout=2.0, login_timeout=2.0)
CONTENT = {"msgtype": "m.text", "body": "hello", "format": "org.matrix.custom.html", "formatted_body": "hello"}


@pytest.fixture
def homeserver() -> Iterator[FakeMatrixServer]:
    with FakeMatrixServer() as server:
        yield server


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.submit(connections.close_all).result()
    pool.shutdown()


def make_client(server: FakeMatrixServer, executor: ThreadPoolExecutor, policy: RetryPolicy = FAST) -> MatrixClient:
    return MatrixClient(
        homeserver_url=server.url,
        username="ibp-bot",
        password="s3cret",
        room_id=ROOM,
        store=DatabaseSessionStore(homeserver_url=server.url, username="ibp-bot"),
        policy=policy,
        executor=executor,
    )


def run(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    return asyncio.run(main())


def test_it_logs_in_with_a_password_and_stores_the_session(
    homeserver: FakeMatrixServer, executor: ThreadPoolExecutor
) -> None:
    client = make_client(homeserver, executor)

    event_id = run(lambda: client.send_message(CONTENT))

    (login,) = homeserver.requests(LOGIN)
    assert login.body == {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "ibp-bot"},
        "password": "s3cret",
        "initial_device_display_name": "IBP Collator",
    }
    (send,) = homeserver.requests(SEND)
    assert send.room_id == ROOM
    assert send.path.startswith("/_matrix/client/v3/rooms/%21alerts%3Afake.local/send/m.room.message/ibp-")
    assert send.body == CONTENT
    assert homeserver.state.events[event_id] == CONTENT
    row = MatrixSession.objects.get(homeserver_url=homeserver.url, username="ibp-bot")
    assert row.user_id == "@ibp-bot:fake.local"
    assert row.device_id == homeserver.state.tokens[row.access_token]
    assert send.token == row.access_token


def test_it_reuses_the_stored_token_and_device_after_a_restart(
    homeserver: FakeMatrixServer, executor: ThreadPoolExecutor
) -> None:
    first = make_client(homeserver, executor)
    run(lambda: first.send_message(CONTENT))
    second = make_client(homeserver, executor)  # a new process: nothing in memory

    run(lambda: second.send_message(CONTENT))

    assert len(homeserver.requests(LOGIN)) == 1
    tokens = {r.token for r in homeserver.requests(SEND)}
    assert len(tokens) == 1
    assert len(homeserver.state.devices) == 1


def test_it_logs_in_again_with_the_same_device_when_the_token_is_rejected(
    homeserver: FakeMatrixServer, executor: ThreadPoolExecutor
) -> None:
    client = make_client(homeserver, executor)
    run(lambda: client.send_message(CONTENT))
    device = MatrixSession.objects.get().device_id
    homeserver.revoke_tokens()

    run(lambda: make_client(homeserver, executor).send_message(CONTENT))

    logins = homeserver.requests(LOGIN)
    assert len(logins) == 2
    assert logins[1].body["device_id"] == device
    assert [r.status for r in homeserver.requests(SEND)] == [200, 401, 200]
    assert homeserver.state.devices == {device}
    row = MatrixSession.objects.get()
    assert row.device_id == device
    assert homeserver.state.tokens[row.access_token] == device


def test_it_retries_the_login_after_a_failure(homeserver: FakeMatrixServer, executor: ThreadPoolExecutor) -> None:
    """Login 1 gets 500 → wait backoff(1) = 0.1 s → login 2 gets 502 → wait 0.2 s → login 3 ok."""
    homeserver.script(LOGIN, (500, {"errcode": "M_UNKNOWN"}), (502, {}))
    client = make_client(homeserver, executor)

    run(lambda: client.send_message(CONTENT))

    logins = homeserver.requests(LOGIN)
    assert [r.status for r in logins] == [500, 502, 200]
    assert logins[1].at - logins[0].at >= 0.1
    assert logins[2].at - logins[1].at >= 0.2
    assert len(homeserver.sent()) == 1


def test_it_gives_up_the_login_after_the_last_attempt(
    homeserver: FakeMatrixServer, executor: ThreadPoolExecutor
) -> None:
    homeserver.script(LOGIN, *[(403, {"errcode": "M_FORBIDDEN"})] * 4)
    client = make_client(homeserver, executor)

    with pytest.raises(MatrixUnavailableError, match="login failed 4 times"):
        run(lambda: client.send_message(CONTENT))
    assert homeserver.requests(SEND) == []


def test_it_honours_retry_after_ms_on_429(homeserver: FakeMatrixServer, executor: ThreadPoolExecutor) -> None:
    """The server asks for 700 ms; backoff(1) would be only 100 ms, so ≥ 0.7 s proves it obeyed."""
    homeserver.script(SEND, (429, {"errcode": "M_LIMIT_EXCEEDED", "error": "Too many", "retry_after_ms": 700}))
    client = make_client(homeserver, executor)

    event_id = run(lambda: client.send_message(CONTENT))

    first, second = homeserver.requests(SEND)
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.7
    assert first.txn_id == second.txn_id  # the same transaction, so never a double post
    assert list(homeserver.state.events) == [event_id]


def test_it_honours_a_retry_after_header_on_429(homeserver: FakeMatrixServer, executor: ThreadPoolExecutor) -> None:
    """No retry_after_ms, a `Retry-After: 1` header: the second try waits ≥ 1 s (backoff(1) is 0.1 s)."""
    homeserver.script(SEND, WithHeaders(429, {"errcode": "M_LIMIT_EXCEEDED"}, {"Retry-After": "1"}))
    client = make_client(homeserver, executor)

    run(lambda: client.send_message(CONTENT))

    first, second = homeserver.requests(SEND)
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0


def test_it_backs_off_when_the_retry_after_header_is_not_ascii_digits(
    homeserver: FakeMatrixServer, executor: ThreadPoolExecutor
) -> None:
    """`Retry-After: ²` passed str.isdigit() and then float() raised; it is now ignored and the
    client's own back-off applies (0.1 s here), and the alert still goes out."""
    homeserver.script(SEND, WithHeaders(429, {"errcode": "M_LIMIT_EXCEEDED"}, {"Retry-After": "²"}))
    client = make_client(homeserver, executor)

    event_id = run(lambda: client.send_message(CONTENT))

    first, second = homeserver.requests(SEND)
    assert (first.status, second.status) == (429, 200)
    assert 0.1 <= second.at - first.at < 1.0
    assert list(homeserver.state.events) == [event_id]


def test_it_backs_off_exponentially_on_server_errors(
    homeserver: FakeMatrixServer, executor: ThreadPoolExecutor
) -> None:
    """500, a dropped connection, 503, then 200: waits of ≥ 0.1, 0.2 and 0.4 s in between."""
    homeserver.script(SEND, (500, {}), DROP, (503, {}))
    client = make_client(homeserver, executor)

    run(lambda: client.send_message(CONTENT))

    sends = homeserver.requests(SEND)
    assert [r.status for r in sends] == [500, 0, 503, 200]
    gaps = [b.at - a.at for a, b in itertools.pairwise(sends)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[2] >= 0.4
    assert len({r.txn_id for r in sends}) == 1
    assert len(homeserver.state.events) == 1


def test_it_gives_up_after_the_last_attempt(homeserver: FakeMatrixServer, executor: ThreadPoolExecutor) -> None:
    homeserver.script(SEND, *[(500, {})] * 4)
    client = make_client(homeserver, executor)

    with pytest.raises(MatrixUnavailableError, match="send failed 4 times, last status 500"):
        run(lambda: client.send_message(CONTENT))
    assert len(homeserver.requests(SEND)) == 4


def test_it_times_out_a_homeserver_that_does_not_answer(
    homeserver: FakeMatrixServer, executor: ThreadPoolExecutor
) -> None:
    policy = RetryPolicy(backoff_initial=0.05, max_attempts=2, send_timeout=0.3)
    homeserver.script(SEND, Delay(1.0), Delay(1.0))
    client = make_client(homeserver, executor, policy)

    with pytest.raises(MatrixUnavailableError, match="send failed 2 times, last status 0"):
        run(lambda: client.send_message(CONTENT))
    assert homeserver.state.events == {}


def test_it_raises_at_once_when_the_homeserver_refuses(
    homeserver: FakeMatrixServer, executor: ThreadPoolExecutor
) -> None:
    homeserver.script(SEND, (403, {"errcode": "M_FORBIDDEN", "error": "not in room"}))
    client = make_client(homeserver, executor)

    with pytest.raises(MatrixRequestError) as caught:
        run(lambda: client.send_message(CONTENT))
    assert (caught.value.status, caught.value.errcode) == (403, "M_FORBIDDEN")
    assert len(homeserver.requests(SEND)) == 1


def test_it_edits_a_message_with_m_replace(homeserver: FakeMatrixServer, executor: ThreadPoolExecutor) -> None:
    client = make_client(homeserver, executor)
    original = run(lambda: client.send_message(CONTENT))
    new = {**CONTENT, "body": "bye", "formatted_body": "<b>bye</b>"}

    run(lambda: client.edit_message(original, new))

    edit = homeserver.requests(SEND)[-1]
    four = {"msgtype": "m.text", "body": "bye", "format": "org.matrix.custom.html", "formatted_body": "<b>bye</b>"}
    assert edit.body == {**four, "m.new_content": four, "m.relates_to": {"rel_type": "m.replace", "event_id": original}}
    assert edit_content(original, new) == edit.body


@pytest.mark.parametrize(
    ("config", "error"),
    [
        (
            MatrixConfig("https://m.example", "bot", "__SET_ME__", "!r:m.example"),
            r"Matrix.password is still __SET_ME__",
        ),
        (MatrixConfig("__SET_ME__", "bot", "pw", "!r:m.example"), r"Matrix.homeserver_url is still __SET_ME__"),
        (MatrixConfig("https://m.example", "bot", "pw", ""), r"Matrix.RoomID is empty"),
        (MatrixConfig("https://m.example", "", "", "!r:m.example"), r"Matrix.Username, Matrix.Password is empty"),
        (MatrixConfig("https://m.example", "bot", "pw", "#alerts:m.example"), r"room id like !abc:server"),
        (MatrixConfig("m.example", "bot", "pw", "!r:m.example"), r"http\(s\) URL"),
    ],
)
def test_it_refuses_a_half_configured_matrix_block(config: MatrixConfig, error: str) -> None:
    with pytest.raises(MatrixConfigError, match=error):
        matrix_config_validate(config)


def test_it_is_off_without_a_homeserver_and_on_with_a_full_block() -> None:
    assert matrix_config_validate(MatrixConfig()) is False
    assert MatrixClient.from_config(MatrixConfig()) is None
    assert matrix_config_validate(MatrixConfig("https://m.example", "bot", "pw", "!r:m.example")) is True
