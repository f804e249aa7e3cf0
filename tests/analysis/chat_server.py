"""A local server speaking the OpenAI chat-completions wire format over real HTTP (Starlette + uvicorn).

It records every request as received (headers, raw body, time) and answers from a script: a described
photo by default, or whatever the test queued: a 429 with Retry-After, a 500, a slow answer, garbage, a 400.
`check_request` asserts what a well-behaved client must send.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DESCRIPTION = (
    "A single well-defined oval plaque on the extensor forearm, pink-red with fine silvery scale on its "
    "surface and a regular border. No scale is visible, so its size is not estimated."
)
SERVED_MODEL = "test-vision-2026-11-01"


@dataclass
class Reply:
    """One scripted answer: `status`, `body` (bytes, or JSON-ready), `headers`, after `delay` seconds."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def answer(
    content: Any = DESCRIPTION, *, model: str = SERVED_MODEL, finish_reason: str = "stop", **message: Any
) -> Reply:
    """A 200 chat completion whose first choice carries `content` (and any other message fields)."""
    return Reply(
        body={
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, **message},
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {"prompt_tokens": 900, "completion_tokens": 60, "total_tokens": 960},
        }
    )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.raw)


class ChatServer:
    """The server's state: `url` (the API root a client is configured with), `requests` received, the
    `script` of replies still to give (then `answer()` for ever), and the most requests seen in flight."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[Received] = []
        self.script: list[Reply] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._complete, methods=["POST"])])

    def then(self, *replies: Reply) -> ChatServer:
        self.script.extend(replies)
        return self

    async def _complete(self, request: Request) -> Response:
        self.requests.append(
            Received(request.url.path, dict(request.headers), await request.body(), time.monotonic())
        )
        reply = self.script.pop(0) if self.script else answer()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(reply.delay)
        finally:
            self.in_flight -= 1
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        media = "application/json" if not isinstance(reply.body, bytes) else "text/html"
        return Response(body, status_code=reply.status, headers=reply.headers, media_type=media)

    async def wait_for(self, count: int, timeout: float = 10) -> None:
        """Until `count` requests have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} requests, expected {count}"
            await asyncio.sleep(0.01)


def check_request(
    received: Received, *, model: str, api_key: str | None, forbidden: tuple[str, ...] = ()
) -> Image.Image:
    """Assert a well-formed request for one photo and return the photo as the server decoded it.

    The path, JSON body, model, low temperature, a token limit, the versioned prompt's rules, the bearer
    key (or none), exactly one image part, inline as a base64 JPEG data URL that Pillow decodes, carrying
    no metadata; none of the `forbidden` strings anywhere in the headers or the body.
    """
    assert received.path == "/v1/chat/completions"
    assert received.headers["content-type"] == "application/json"
    if api_key:
        assert received.headers["authorization"] == f"Bearer {api_key}"
    else:
        assert "authorization" not in received.headers
    body = received.json
    assert body["model"] == model
    assert 0 <= body["temperature"] <= 0.3
    assert 0 < body["max_tokens"] <= 500
    system, user = body["messages"]
    assert system["role"] == "system"
    for rule in ("diagnosis", "80 words", "British", "scale"):
        assert rule in system["content"], rule
    assert user["role"] == "user"
    parts = {part["type"]: part for part in user["content"]}
    assert set(parts) == {"text", "image_url"}
    url = parts["image_url"]["image_url"]["url"]
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix), "the photo must be inline, never a link"
    data = base64.b64decode(url[len(prefix) :], validate=True)
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "JPEG"
    assert not image.getexif(), "no EXIF (GPS, camera, time) may leave with the photo"
    assert "icc_profile" not in image.info
    everything = json.dumps(received.headers) + received.raw.decode()
    for word in forbidden:
        assert word.lower() not in everything.lower(), f"{word!r} was sent to the AI service"
    return image
