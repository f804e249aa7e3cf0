"""The AI client against a local chat-completions server over real HTTP: what it sends, how it retries,
what it refuses to accept; and the settings that configure it."""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import anyio
import httpx
import pytest
from PIL import Image
from pydantic import ValidationError

from consultcam.analysis.ai import (
    AI_IMAGE_EDGE_PX,
    AnalysisFailed,
    ChatCompletionsClient,
    prepare_jpeg,
)
from consultcam.analysis.prompt import PROMPT_VERSION, SYSTEM_PROMPT
from consultcam.config import Settings
from consultcam.kit.http import retry_after_seconds
from tests.analysis.chat_server import DESCRIPTION, SERVED_MODEL, Reply, answer, check_request
from tests.conftest import PATIENT, phone_photo
from tests.e2e.harness import free_port

MODEL = "llava-test"
API_KEY = "sk-test-0123456789abcdef"


@pytest.fixture(scope="module")
def photo() -> bytes:
    """A 12-megapixel phone JPEG with GPS tags, as it would be sent (prepared)."""
    return prepare_jpeg(phone_photo())


def client(url: str, **options) -> ChatCompletionsClient:
    options = {"timeout_seconds": 5.0, "max_retries": 3, "backoff_seconds": 0.01, **options}
    return ChatCompletionsClient(url, MODEL, options.pop("api_key", API_KEY), **options)


async def failure(chat, photo: bytes, **options) -> AnalysisFailed:
    with pytest.raises(AnalysisFailed) as failed:
        await client(chat.url, **options).describe(photo)
    return failed.value


async def test_the_photo_is_sent_inline_with_the_versioned_prompt_and_the_answer_kept(chat_server, photo):
    described = await client(chat_server.url).describe(photo)

    assert described.text == DESCRIPTION
    assert described.model == SERVED_MODEL  # what the service says answered, not only what was asked
    assert described.prompt_version == PROMPT_VERSION
    assert described.tries == 1
    [received] = chat_server.requests
    image = check_request(
        received,
        model=MODEL,
        api_key=API_KEY,
        forbidden=(PATIENT["name"], PATIENT["nhi"], PATIENT["birthDate"], "TestPhone"),
    )
    assert max(image.size) == AI_IMAGE_EDGE_PX  # downscaled from 4032 px, upright as stored
    assert received.json["messages"][0]["content"] == SYSTEM_PROMPT


def test_the_prepared_photo_is_small_upright_and_metadata_free():
    original = phone_photo(orientation=1, size=(4032, 3024))
    prepared = prepare_jpeg(original)
    with Image.open(io.BytesIO(prepared)) as image:
        assert image.size == (1024, 768)
        assert not image.getexif()
    assert len(prepared) < len(original) / 4
    small = prepare_jpeg(phone_photo(orientation=1, size=(800, 600)))
    assert Image.open(io.BytesIO(small)).size == (800, 600)  # never enlarged


async def test_without_a_key_no_authorization_header_is_sent(chat_server, photo):
    """Local servers (Ollama, llama.cpp) often need no key."""
    await client(chat_server.url, api_key="").describe(photo)
    check_request(chat_server.requests[0], model=MODEL, api_key=None)


async def test_a_429_is_retried_after_the_seconds_retry_after_asks_for(chat_server, photo):
    chat_server.then(Reply(429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": "1"}))

    described = await client(chat_server.url).describe(photo)

    assert described.tries == 2
    first, second = chat_server.requests
    assert second.at - first.at >= 0.95


async def test_a_429_is_retried_after_the_http_date_retry_after_names(chat_server, photo):
    at = datetime.now(UTC) + timedelta(seconds=2)
    chat_server.then(Reply(429, {"error": "slow down"}, {"Retry-After": format_datetime(at, usegmt=True)}))

    described = await client(chat_server.url).describe(photo)

    assert described.tries == 2
    first, second = chat_server.requests
    assert second.at - first.at >= 0.9  # the date has whole seconds: 1-2 s from now


async def test_a_retry_after_longer_than_the_cap_fails_at_once_instead_of_retrying_early(chat_server, photo):
    chat_server.then(Reply(429, {"error": {"message": "daily quota used"}}, {"Retry-After": "3600"}))

    failed = await failure(chat_server, photo)

    assert len(chat_server.requests) == 1
    assert failed.status == 429
    assert "rate-limiting" in failed.reason
    assert "3600 s" in failed.reason
    assert "daily quota used" in failed.reason


async def test_server_errors_are_retried_with_back_off_up_to_max_retries(chat_server, photo):
    chat_server.then(*[Reply(500, {"error": {"message": "model overloaded"}})] * 5)

    failed = await failure(chat_server, photo, max_retries=2)

    assert len(chat_server.requests) == 3
    assert failed.status == 500
    assert "HTTP 500" in failed.reason
    assert "model overloaded" in failed.reason
    assert "tried 3 times" in failed.reason


async def test_a_server_error_then_an_answer_succeeds(chat_server, photo):
    chat_server.then(Reply(502, b"<html>Bad Gateway</html>"), Reply(503, {"error": "warming up"}))

    described = await client(chat_server.url).describe(photo)

    assert described.text == DESCRIPTION
    assert len(chat_server.requests) == 3


async def test_a_slow_answer_times_out_and_is_retried(chat_server, photo):
    chat_server.then(Reply(delay=1.5), Reply(delay=1.5))

    started = asyncio.get_running_loop().time()
    failed = await failure(chat_server, photo, timeout_seconds=0.3, max_retries=1)

    assert len(chat_server.requests) == 2
    assert "did not answer within 0.3 s" in failed.reason
    assert failed.status is None
    assert asyncio.get_running_loop().time() - started < 1.4  # gave up on each try; did not wait it out


async def test_a_slow_try_then_a_quick_one_succeeds(chat_server, photo):
    chat_server.then(Reply(delay=1.5))
    described = await client(chat_server.url, timeout_seconds=0.3).describe(photo)
    assert described.tries == 2


async def test_an_unreachable_service_is_retried_then_reported(photo):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(AnalysisFailed) as failed:
        await client(url, max_retries=2).describe(photo)
    assert "Could not reach the AI service (ConnectError)" in failed.value.reason
    assert "tried 3 times" in failed.value.reason


async def test_a_400_is_reported_not_retried(chat_server, photo):
    chat_server.then(Reply(400, {"error": {"message": "Invalid image: too many pixels", "type": "invalid"}}))

    failed = await failure(chat_server, photo)

    assert len(chat_server.requests) == 1
    assert failed.status == 400
    assert not failed.retryable
    assert failed.reason == "The AI service rejected the request (HTTP 400: Invalid image: too many pixels)."


async def test_a_refused_key_names_the_setting_and_is_never_echoed(chat_server, photo, caplog):
    caplog.set_level(logging.DEBUG)
    chat_server.then(Reply(401, {"error": {"message": f"Incorrect API key provided: {API_KEY}"}}))

    failed = await failure(chat_server, photo)

    assert len(chat_server.requests) == 1
    assert "CONSULTCAM_AI_API_KEY" in failed.reason
    assert API_KEY not in failed.reason
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(client(chat_server.url))


async def test_an_unknown_model_names_the_settings(chat_server, photo):
    chat_server.then(Reply(404, {"error": {"message": "model 'llava-test' not found"}}))
    failed = await failure(chat_server, photo)
    assert "CONSULTCAM_AI_MODEL" in failed.reason
    assert "not found" in failed.reason
    assert len(chat_server.requests) == 1


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(200, b"<html>Welcome to nginx</html>"), "not JSON"),
        (Reply(200, {"object": "chat.completion", "choices": []}), "no choices"),
        (Reply(200, {"error": None}), "no choices"),
        (Reply(200, [1, 2, 3]), "no choices"),
        (answer(""), "empty description"),
        (answer(None), "empty description"),
        (answer("   \n"), "empty description"),
        (answer(None, refusal="I can't help with medical images."), "declined"),
        (answer("", finish_reason="content_filter"), "content filter"),
        (answer("An oval plaque with", finish_reason="length"), "cut off"),
    ],
    ids=[
        "html",
        "no-choices",
        "no-choices-key",
        "not-an-object",
        "empty",
        "null",
        "blank",
        "refusal",
        "filter",
        "length",
    ],
)
async def test_a_malformed_answer_is_a_clear_failure_and_not_retried(chat_server, photo, reply, reason):
    chat_server.then(reply)

    failed = await failure(chat_server, photo)

    assert reason in failed.reason
    assert len(chat_server.requests) == 1


async def test_content_parts_are_joined_and_a_reasoning_block_dropped(chat_server, photo):
    chat_server.then(
        answer(
            [
                {"type": "text", "text": "<think>It looks like psoriasis.</think>\n"},
                {"type": "text", "text": "A pink plaque."},
            ]
        )
    )
    described = await client(chat_server.url).describe(photo)
    assert described.text == "A pink plaque."


async def test_no_more_requests_are_in_flight_than_the_limiter_allows(chat_server, photo):
    chat_server.then(*[Reply(delay=0.3, body=answer().body)] * 6)
    limiter = anyio.CapacityLimiter(2)

    results = await asyncio.gather(
        *(client(chat_server.url, limiter=limiter).describe(photo) for _ in range(6))
    )

    assert [r.text for r in results] == [DESCRIPTION] * 6
    assert chat_server.max_in_flight == 2


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # in the past
        ({"Retry-After": "Sat, 21 Nov 2026 10:00:30 GMT"}, 30.0),
        ({"Retry-After": "soon"}, None),
        ({"retry-after-ms": "1500", "Retry-After": "2"}, 1.5),
        ({}, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(headers, seconds):
    now = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)
    assert retry_after_seconds(httpx.Headers(headers), now) == seconds


# Settings


def test_ai_is_off_by_default_with_sensible_limits(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert not settings.ai_enabled
    assert (settings.ai_timeout_seconds, settings.ai_concurrency, settings.ai_max_retries) == (30, 2, 3)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1/",
        "http://127.0.0.1:11434/v1",
        "http://localhost:8000/v1",
        "http://[::1]:8080/v1",
    ],
)
def test_https_or_loopback_endpoints_are_accepted(tmp_path, url):
    settings = Settings(data_dir=tmp_path, ai_base_url=url, ai_model="gpt-4o-mini", ai_api_key=API_KEY)
    assert settings.ai_enabled
    assert not settings.ai_base_url.endswith("/")
    assert API_KEY not in repr(settings)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ai_base_url": "http://ai.example.org/v1", "ai_model": "m"}, "must be an https:// URL"),
        ({"ai_base_url": "http://192.168.1.20:8000/v1", "ai_model": "m"}, "http:// only to this machine"),
        ({"ai_base_url": "ftp://127.0.0.1/v1", "ai_model": "m"}, "must be an https:// URL"),
        ({"ai_base_url": "https://api.openai.com/v1"}, "CONSULTCAM_AI_MODEL is required"),
        ({"ai_base_url": "https://api.openai.com/v1/chat/completions", "ai_model": "m"}, "the API root"),
        ({"ai_timeout_seconds": 0}, "ai_timeout_seconds"),
        ({"ai_concurrency": 0}, "ai_concurrency"),
        ({"ai_max_retries": -1}, "ai_max_retries"),
    ],
)
def test_bad_ai_settings_are_refused_with_what_to_fix(tmp_path, values, message):
    with pytest.raises(ValidationError) as refused:
        Settings(data_dir=tmp_path, ai_api_key=API_KEY, **values)
    assert message in str(refused.value)
    assert API_KEY not in str(refused.value)
