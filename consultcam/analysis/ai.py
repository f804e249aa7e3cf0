"""The AI description: one photo to any OpenAI-compatible chat-completions endpoint, one paragraph back.

What is sent (docs/ai.md): the clinical prompt (consultcam/analysis/prompt.py) and the photo, downscaled to
a long edge of AI_IMAGE_EDGE_PX and re-encoded as a JPEG with no metadata, inline as a
`data:image/jpeg;base64,…` URL, never a link the service could fetch or keep. No name, NHI, birth date, id
or file name goes with it. The API key travels only in the `Authorization` header and is never logged.

Wire format: OpenAI's chat completions (`POST {base}/chat/completions`), which OpenAI, Azure OpenAI, vLLM,
llama.cpp's server, Ollama, LM Studio and LiteLLM all speak. httpx rather than the `openai` SDK: the
request is one POST, httpx is already a dependency, and the retry rules (Retry-After, which statuses) stay
ours and visible instead of the SDK's own retries stacked under them.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from PIL import Image

from consultcam.analysis.prompt import MAX_TOKENS, PROMPT_VERSION, SYSTEM_PROMPT, TEMPERATURE, USER_PROMPT
from consultcam.config import Settings
from consultcam.kit.http import RetryPolicy, Unreachable, new_client, retry_after_seconds, send_with_retries

__all__ = [
    "AI_IMAGE_EDGE_PX",
    "RETRY_AFTER_MAX_SECONDS",
    "AnalysisFailed",
    "ChatCompletionsClient",
    "Description",
    "chat_request",
    "parse_answer",
    "prepare_jpeg",
]

log = logging.getLogger(__name__)

#: Long edge of the photo sent, in pixels. OpenAI's "high" detail scales the short side to 768 px, so a 4:3
#: photo at 1024 x 768 is all it would look at anyway; for models that count 28 px patches (Qwen2.5-VL, the
#: usual local choice) it is about 1,000 image tokens instead of 2,250 at 1536 px. Enough to judge border and
#: surface on a photo framed on the lesion.
AI_IMAGE_EDGE_PX = 1024
AI_JPEG_QUALITY = 85

#: Longest Retry-After honoured by waiting. A service asking for longer (a spent daily quota) fails the
#: description at once rather than holding a worker; retrying sooner than asked would not honour it.
RETRY_AFTER_MAX_SECONDS = 60.0
#: Back-off without Retry-After: random between 0 and BACKOFF_SECONDS x 2^(try - 1), at most BACKOFF_MAX.
BACKOFF_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 20.0

#: Longest description kept, in characters (80 words are about 500): a runaway answer is cut, not stored.
MAX_DESCRIPTION_CHARS = 1500

_THINKING = re.compile(r"^\s*<think>.*?</think>\s*", re.S)  # reasoning models served raw (Qwen3, R1)


class AnalysisFailed(Exception):
    """The photo could not be described. `reason` is one sentence for the clinician and the log (never the
    API key or the photo); `retryable` is True for 429, 5xx, timeouts and connection errors; `status` the
    HTTP status, when there was one."""

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class Description:
    """A description as received: `text` (stripped, at most MAX_DESCRIPTION_CHARS), `model` (what the
    service says answered, else the model asked for), `prompt_version` (prompt.PROMPT_VERSION), `tries`."""

    text: str
    model: str
    prompt_version: str
    tries: int


def prepare_jpeg(data: bytes, max_edge_px: int = AI_IMAGE_EDGE_PX) -> bytes:
    """The photo as sent: `data` (any Pillow-readable image, normally the stored normalised JPEG) reduced to
    a long edge of at most `max_edge_px` (never enlarged), RGB, re-encoded as a baseline JPEG at quality
    AI_JPEG_QUALITY with no EXIF, ICC, XMP or comment. Raises what Pillow raises for undecodable bytes."""
    with Image.open(io.BytesIO(data)) as source:
        source.draft("RGB", (max_edge_px, max_edge_px))  # JPEG: decode at 1/2..1/8 scale when it can
        image = source.convert("RGB")
    if max(image.size) > max_edge_px:
        scale = max_edge_px / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=AI_JPEG_QUALITY, optimize=True)
    return out.getvalue()


def chat_request(jpeg: bytes, model: str) -> dict[str, Any]:
    """The chat-completions request body for one photo: the system prompt, then one user message with a
    text part and an `image_url` part holding the JPEG inline (RFC 2397 data URL, base64). Source: OpenAI
    API reference, "Create chat completion", vision input."""
    data_url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": USER_PROMPT},
                    {"type": "image_url", "image_url": {"url": data_url}},
                ],
            },
        ],
        "max_tokens": MAX_TOKENS,
        "temperature": TEMPERATURE,
        "stream": False,
    }


def parse_answer(body: bytes) -> tuple[str, str | None]:
    """(text, model) from a chat-completions response body. `content` may be a string or a list of parts
    (only `text` parts are kept); a leading `<think>…</think>` block is dropped.

    Raises AnalysisFailed (not retryable) when the body is not JSON, has no choices, was cut off at
    MAX_TOKENS, was filtered or refused (`message.refusal`, `finish_reason` "content_filter"), or is empty.
    """
    try:
        answer = json.loads(body)
    except ValueError:
        raise AnalysisFailed("The AI service's answer was not JSON.") from None
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise AnalysisFailed("The AI service's answer held no description (no choices).")
    choice = choices[0]
    message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    if message.get("refusal"):
        raise AnalysisFailed(f"The AI model declined to describe the photo: {_clip(str(message['refusal']))}")
    if choice.get("finish_reason") == "content_filter":
        raise AnalysisFailed("The AI service withheld its description (content filter).")
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    text = _THINKING.sub("", content).strip() if isinstance(content, str) else ""
    if choice.get("finish_reason") == "length":
        raise AnalysisFailed("The AI model's description was cut off: it ignored the 80-word limit.")
    if not text:
        raise AnalysisFailed("The AI model returned an empty description.")
    model = answer.get("model")
    return text[:MAX_DESCRIPTION_CHARS], model if isinstance(model, str) and model else None


class ChatCompletionsClient:
    """Describes photos through one OpenAI-compatible endpoint.

    `base_url` is the API root (`…/v1`); `api_key` is sent as `Authorization: Bearer` when set (local
    servers often need none). Each try has `timeout_seconds`; up to `max_retries` more tries follow a 429
    (after its Retry-After, when at most RETRY_AFTER_MAX_SECONDS), a 5xx, a timeout or a connection error,
    with exponential back-off and full jitter (`consultcam.kit.http`). Any other 4xx and any
    malformed answer fail at once. `limiter` bounds the requests in flight across clients sharing it
    (the per-process AI_CONCURRENCY); waits between tries do not hold it.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        *,
        timeout_seconds: float = 30.0,
        max_retries: int = 3,
        limiter: anyio.CapacityLimiter | None = None,
        backoff_seconds: float = BACKOFF_SECONDS,
        backoff_max_seconds: float = BACKOFF_MAX_SECONDS,
        retry_after_max_seconds: float = RETRY_AFTER_MAX_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self._api_key = api_key
        self.timeout_seconds = timeout_seconds
        self.max_retries = max_retries
        self._limiter = limiter
        self.retry_after_max_seconds = retry_after_max_seconds
        # A Retry-After over the cap fails at once: retrying sooner than asked would not honour it.
        self.retry = RetryPolicy(
            attempts=max_retries + 1,
            wait_initial=backoff_seconds,
            wait_max=backoff_max_seconds,
            max_retry_after=retry_after_max_seconds,
            give_up_on_long_retry_after=True,
        )
        self._transport = transport

    @classmethod
    def from_settings(
        cls, settings: Settings, *, limiter: anyio.CapacityLimiter | None = None
    ) -> ChatCompletionsClient:
        """The client for CONSULTCAM_AI_* settings. Raises ValueError when no endpoint is configured."""
        if not settings.ai_enabled:
            raise ValueError("no AI endpoint is configured (CONSULTCAM_AI_BASE_URL)")
        return cls(
            settings.ai_base_url,
            settings.ai_model,
            settings.ai_api_key,
            timeout_seconds=settings.ai_timeout_seconds,
            max_retries=settings.ai_max_retries,
            limiter=limiter,
        )

    def __repr__(self) -> str:  # never the key
        return f"ChatCompletionsClient({self.url!r}, model={self.model!r})"

    async def describe(self, jpeg: bytes) -> Description:
        """Describe one JPEG (send it as `prepare_jpeg` made it). Returns the Description; raises
        AnalysisFailed with the reason of the last try."""
        payload = chat_request(jpeg, self.model)
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        started = time.perf_counter()
        async with new_client(timeout=self.timeout_seconds, transport=self._transport) as http:
            try:
                # A description changes nothing on the service: the POST is safe to repeat.
                attempted = await send_with_retries(
                    lambda: self._post(http, payload, headers),
                    self.retry,
                    method="POST",
                    repeatable=True,
                    label="AI description",
                )
            except Unreachable as unreachable:
                raise self._failed(self._transport_failure(unreachable.error), unreachable.tries) from None
        try:
            text, model = self._read(attempted.response)
        except AnalysisFailed as failed:
            raise self._failed(failed, attempted.tries) from None
        log.info(
            "AI description by %s in %.0f ms, %d tries",
            model or self.model,
            (time.perf_counter() - started) * 1000,
            attempted.tries,
        )
        return Description(text, model or self.model, PROMPT_VERSION, attempted.tries)

    async def _post(
        self, http: httpx.AsyncClient, payload: dict[str, Any], headers: dict[str, str]
    ) -> httpx.Response:
        """One try; the limiter is held only while the request is in flight, not between tries."""
        if self._limiter is not None:
            async with self._limiter:
                return await http.post(self.url, json=payload, headers=headers)
        return await http.post(self.url, json=payload, headers=headers)

    def _failed(self, failed: AnalysisFailed, tries: int) -> AnalysisFailed:
        if tries > 1:
            failed.reason = f"{failed.reason} (tried {tries} times)"
            failed.args = (failed.reason,)
        log.warning("AI description failed after %d tries: %s", tries, failed.reason)
        return failed

    def _transport_failure(self, error: httpx.TransportError) -> AnalysisFailed:
        if isinstance(error, httpx.TimeoutException):
            return AnalysisFailed(
                f"The AI service did not answer within {self.timeout_seconds:g} s.", retryable=True
            )
        return AnalysisFailed(f"Could not reach the AI service ({type(error).__name__}).", retryable=True)

    def _read(self, response: httpx.Response) -> tuple[str, str | None]:
        """(text, model) from the last answer; AnalysisFailed in words for anything but a good 200."""
        status = response.status_code
        if status == 200:
            return parse_answer(response.content)
        detail = self._redact(_error_message(response))
        if self.retry.retryable(response):
            wait = retry_after_seconds(response.headers)
            too_long = wait is not None and wait > self.retry_after_max_seconds
            reason = (
                f"The AI service is rate-limiting requests (HTTP 429{': ' + detail if detail else ''})."
                if status == 429
                else f"The AI service failed (HTTP {status}{': ' + detail if detail else ''})."
            )
            if too_long:
                reason += f" It asked to wait {wait:.0f} s, longer than consultcam waits."
            raise AnalysisFailed(reason, retryable=not too_long, status=status)
        if status in (401, 403):
            reason = f"The AI service refused the API key (HTTP {status}); check CONSULTCAM_AI_API_KEY."
        elif status == 404:
            reason = (
                f"The AI service has no such model or endpoint (HTTP 404{': ' + detail if detail else ''}); "
                "check CONSULTCAM_AI_BASE_URL and CONSULTCAM_AI_MODEL."
            )
        else:
            reason = f"The AI service rejected the request (HTTP {status}{': ' + detail if detail else ''})."
        raise AnalysisFailed(reason, status=status)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if len(self._api_key) >= 4 else text


def _error_message(response: httpx.Response) -> str:
    """The error's message from an OpenAI-style `{"error": {"message": …}}` body, `{"error": "…"}`,
    `{"detail": …}`, or the text; at most 200 characters."""
    try:
        body = response.json()
    except ValueError:
        return _clip(response.text)
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            error = error.get("message", "")
        return _clip(str(error or ""))
    return ""


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
