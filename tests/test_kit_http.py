"""The kit's retrying HTTP client and OAuth2 token cache on an in-process transport: which answers and methods
are retried, Retry-After honoured or given up on, one token fetch for many callers, a new one after a 401."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from consultcam.kit.http import Attempted, RetryPolicy, Unreachable, new_client, send_with_retries
from consultcam.kit.oauth2 import ClientCredentials, TokenCache, TokenRefused

FAST = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.02)


def scripted(
    *answers: int | Exception, headers: dict[str, str] | None = None
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport giving each request the next status (or raising the next error); the last repeats."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        answer = answers[min(len(seen), len(answers) - 1)]
        seen.append(request)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, headers=headers or {}, json={"access_token": f"t{len(seen)}"})

    return httpx.MockTransport(handle), seen


async def run(
    transport: httpx.MockTransport, method: str, policy: RetryPolicy = FAST, *, repeatable: bool = False
) -> Attempted:
    async with new_client(timeout=1.0, transport=transport) as client:
        return await send_with_retries(
            lambda: client.request(method, "https://api.example/x"),
            policy,
            method=method,
            repeatable=repeatable,
        )


async def test_a_5xx_then_a_200_is_retried_for_an_idempotent_method() -> None:
    transport, seen = scripted(503, 500, 200)
    attempted = await run(transport, "GET")
    assert (attempted.response.status_code, attempted.tries, len(seen)) == (200, 3, 3)


async def test_a_post_is_sent_once_unless_the_caller_says_it_is_safe_to_repeat() -> None:
    transport, seen = scripted(503, 200)
    assert (await run(transport, "POST")).response.status_code == 503
    assert len(seen) == 1
    transport, seen = scripted(503, 200)
    assert (await run(transport, "POST", repeatable=True)).response.status_code == 200
    assert len(seen) == 2


async def test_a_4xx_is_never_retried_and_the_last_5xx_is_returned() -> None:
    transport, seen = scripted(404)
    assert (await run(transport, "GET")).tries == 1
    transport, seen = scripted(502)
    attempted = await run(transport, "DELETE")
    assert (attempted.response.status_code, attempted.tries, len(seen)) == (502, 3, 3)


async def test_transport_errors_are_retried_then_reported() -> None:
    transport, _seen = scripted(httpx.ConnectError("refused"))
    with pytest.raises(Unreachable) as unreachable:
        await run(transport, "GET")
    assert unreachable.value.tries == 3
    assert isinstance(unreachable.value.error, httpx.ConnectError)


async def test_retry_after_is_waited_for_or_given_up_on_when_longer_than_the_cap() -> None:
    transport, seen = scripted(429, 200, headers={"Retry-After": "1"})
    started = time.monotonic()
    assert (await run(transport, "GET")).response.status_code == 200
    assert time.monotonic() - started >= 0.95

    patient = RetryPolicy(
        attempts=3, wait_initial=0.01, max_retry_after=0.5, give_up_on_long_retry_after=True
    )
    transport, seen = scripted(429, 200, headers={"Retry-After": "3600"})
    attempted = await run(transport, "GET", patient)
    assert (attempted.response.status_code, len(seen)) == (429, 1)


async def test_each_answer_is_logged_with_its_support_id_and_without_the_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Medtech support asks for the mt-correlationid of a failed call: the log has it, and not the search
    (an NHI) nor the token."""
    transport, _ = scripted(503, 422)
    caplog.set_level("INFO", logger="consultcam.kit.http")
    async with new_client(timeout=1.0, transport=transport) as client:
        await send_with_retries(
            lambda: client.get(
                "https://alex.example/FHIR/DocumentReference?patient.identifier=nhi|ZZZ0016",
                headers={
                    "mt-correlationid": "c0ffee00-0000-4000-8000-000000000001",
                    "authorization": "Bearer tk",
                },
            ),
            FAST,
            method="GET",
            label="ALEX GET /DocumentReference",
        )

    answers = [r for r in caplog.records if "answered" in r.getMessage()]
    assert [r.getMessage() for r in answers] == [
        "ALEX GET /DocumentReference: answered 503 (mt-correlationid c0ffee00-0000-4000-8000-000000000001)",
        "ALEX GET /DocumentReference: answered 422 (mt-correlationid c0ffee00-0000-4000-8000-000000000001)",
    ]
    assert {r.levelname for r in answers} == {"WARNING"}
    assert "ZZZ0016" not in caplog.text
    assert "Bearer tk" not in caplog.text


async def test_one_token_fetch_for_many_callers_and_a_new_one_for_a_stale_token() -> None:
    transport, seen = scripted(200)
    tokens = TokenCache(ClientCredentials("https://login.example/token", "id", "s3cret"), FAST)
    async with new_client(timeout=1.0, transport=transport) as client:
        first = await asyncio.gather(*(tokens.token(client) for _ in range(5)))
        assert set(first) == {"t1"}
        assert await tokens.token(client, stale="t1") == "t2"
        assert await tokens.token(client, stale="t1") == "t2"  # someone else already refreshed it
    assert len(seen) == 2
    assert seen[0].headers["Authorization"].startswith("Basic ")
    assert "s3cret" not in repr(tokens)
    assert "s3cret" not in repr(tokens.credentials)


async def test_a_refused_token_request_says_its_status_and_error() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "invalid_client"})

    tokens = TokenCache(ClientCredentials("https://login.example/token", "id", "wrong"), FAST)
    async with new_client(timeout=1.0, transport=httpx.MockTransport(handle)) as client:
        with pytest.raises(TokenRefused, match=r"HTTP 401 \(invalid_client\)"):
            await tokens.token(client)


@pytest.mark.parametrize("attempts", [0, -1])
def test_a_policy_refuses_fewer_than_one_try(attempts: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(attempts=attempts)
