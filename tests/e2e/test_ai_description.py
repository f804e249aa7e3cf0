"""The AI description on the desktop (issue 6): a real `consultcam serve` configured for a local
chat-completions server (tests/analysis/chat_server.py, over real HTTP in a thread of this process). The
description arrives live, labelled as AI-generated with its model; it enters the notes (and so the record)
only when the clinician presses "Add to notes"; a failure says why; without an endpoint nothing is shown."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.analysis.chat_server import DESCRIPTION, SERVED_MODEL, ChatServer, Reply, answer
from tests.conftest import serving
from tests.e2e.a11y import check_axe
from tests.e2e.conftest import Server, shot
from tests.e2e.flows import add_photo, record_consent, start_session
from tests.e2e.test_desktop_review import body_site, gallery_items, images, jpeg

pytestmark = pytest.mark.e2e

MODEL = "qwen2.5-vl-test"
LABEL = "AI-generated description — check before use"
REJECTED = "The AI service rejected the request (HTTP 400: image_url must be a data URL)."


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    """The local chat-completions server, served by uvicorn on its own event loop in a daemon thread (the
    browser tests are synchronous); `chat_server.url` is the API root to configure."""
    server = ChatServer()
    ready = threading.Event()
    control: dict[str, Any] = {}

    async def run() -> None:
        control["loop"], control["stop"] = asyncio.get_running_loop(), asyncio.Event()
        async with serving(server.app) as origin:
            server.url = f"{origin}/v1"
            ready.set()
            await control["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(run(),), name="chat-server", daemon=True)
    thread.start()
    assert ready.wait(15), "the chat-completions server did not start"
    yield server
    control["loop"].call_soon_threadsafe(control["stop"].set)
    thread.join(10)


@pytest.fixture
def ai_server(server_factory, chat_server: ChatServer) -> Server:
    """consultcam with AI descriptions on, one request at a time, few retries (a failure shows quickly)."""
    return server_factory(
        CONSULTCAM_AI_BASE_URL=chat_server.url,
        CONSULTCAM_AI_MODEL=MODEL,
        CONSULTCAM_AI_TIMEOUT_SECONDS="10",
        CONSULTCAM_AI_MAX_RETRIES="1",
        CONSULTCAM_AI_CONCURRENCY="1",
    )


def details(desktop: Page) -> Locator:
    return desktop.get_by_test_id("metadata-panel")


def stored(server: Server, session_id: str, image_id: str) -> dict[str, Any]:
    [image] = [image for image in images(server, session_id) if image["id"] == image_id]
    return image


def eventually(check: Any, timeout: float = 10) -> None:
    """Wait until `check()` is true (what the server stores settles a moment after the page says so)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the condition did not come true"
        time.sleep(0.1)


def settled(server: Server, session_id: str, image_id: str) -> dict[str, Any]:
    """The image once its analysis is done or failed (asked of the API, not the page)."""
    deadline = time.monotonic() + 20
    while (image := stored(server, session_id, image_id))["analysis"]["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, image["analysis"]
        time.sleep(0.1)
    return image


def test_the_description_arrives_live_and_enters_the_notes_only_when_added(
    ai_server: Server, chat_server: ChatServer, desktop_factory
) -> None:
    chat_server.then(Reply(delay=4.0, body=answer().body))  # slow enough to see "Describing…"
    desktop = desktop_factory(ai_server)
    session_id = start_session(desktop, ai_server, encounter="enc-ai-described")
    record_consent(ai_server, session_id)
    forearm = body_site(ai_server, "forearm")
    metadata = {"label": "Rash, left forearm", "bodySite": forearm, "laterality": "left"}
    photo = add_photo(ai_server, session_id, jpeg("cat.jpg"), metadata)
    assert photo["analysis"] == {"status": "pending"}
    panel = details(desktop)
    ai = panel.get_by_test_id("ai-description")
    card = gallery_items(desktop).first

    # While the service works: said plainly, no text to add yet.
    expect(ai).to_be_visible()
    expect(ai).to_contain_text(LABEL)
    expect(ai.get_by_test_id("ai-description-text")).to_have_text("Describing…")
    expect(ai.get_by_test_id("ai-add-to-notes")).to_be_hidden()
    ai.scroll_into_view_if_needed()
    check_axe(desktop, "the details panel while the photo is described")
    shot(desktop, "desktop-ai-describing")

    # It arrives over the event stream: no reload, no click.
    expect(ai.get_by_test_id("ai-description-text")).to_have_text(DESCRIPTION, timeout=20_000)
    expect(ai).to_contain_text(f"Model: {SERVED_MODEL}")
    expect(ai.get_by_role("heading", name=LABEL)).to_be_visible()
    expect(card.locator(".badge-ai")).to_have_text("AI description")
    # Nothing went into the record's fields by itself.
    notes = panel.get_by_label("Notes")
    expect(notes).to_have_value("")
    assert "notes" not in stored(ai_server, session_id, photo["id"])["metadata"]
    add = ai.get_by_role("button", name="Add to notes")
    expect(add).to_be_enabled()
    ai.scroll_into_view_if_needed()
    check_axe(desktop, "the details panel with an AI description")
    shot(desktop, "desktop-ai-description")

    # "Add to notes": saved at once, the keyboard left in the notes to edit them.
    add.click()
    expect(notes).to_have_value(DESCRIPTION)
    expect(notes).to_be_focused()
    expect(panel.get_by_test_id("metadata-status")).to_have_text("Saved")
    assert stored(ai_server, session_id, photo["id"])["metadata"]["notes"] == DESCRIPTION
    expect(ai.get_by_test_id("ai-add-to-notes")).to_have_text("Added to notes")
    expect(ai.get_by_test_id("ai-add-to-notes")).to_be_disabled()
    shot(desktop, "desktop-ai-description-added")

    # The clinician edits it like anything typed; the edit is what is kept.
    desktop.keyboard.type(" Itchy for two weeks.")
    edited = f"{DESCRIPTION} Itchy for two weeks."
    eventually(lambda: stored(ai_server, session_id, photo["id"])["metadata"].get("notes") == edited)
    expect(ai.get_by_test_id("ai-add-to-notes")).to_have_text("Added to notes")
    analysis = stored(ai_server, session_id, photo["id"])["analysis"]
    assert analysis["description"] == DESCRIPTION  # the AI's own text is kept apart, unchanged

    # The viewer's caption carries it too, labelled the same way.
    card.get_by_role("button", name="Open photo 1 in the viewer").click()
    viewer = desktop.get_by_test_id("image-viewer")
    expect(viewer.get_by_test_id("viewer-stage")).to_have_attribute("data-state", "ready")
    caption_ai = viewer.get_by_test_id("ai-description")
    expect(caption_ai).to_contain_text(LABEL)
    expect(caption_ai).to_contain_text(f"Model: {SERVED_MODEL}")
    expect(caption_ai.get_by_test_id("ai-description-text")).to_have_text(DESCRIPTION)
    expect(caption_ai.get_by_test_id("ai-add-to-notes")).to_have_text("Added to notes")
    check_axe(desktop, "the viewer with an AI description")
    shot(desktop, "desktop-ai-viewer")
    desktop.keyboard.press("Escape")
    expect(viewer).to_have_count(0)

    [request] = chat_server.requests
    assert request.json["model"] == MODEL
    assert "Aroha" not in request.raw.decode()


def test_add_to_notes_from_the_viewer_keeps_the_notes_already_written(
    ai_server: Server, chat_server: ChatServer, desktop_factory
) -> None:
    desktop = desktop_factory(ai_server)
    session_id = start_session(desktop, ai_server, encounter="enc-ai-viewer")
    record_consent(ai_server, session_id)
    photo = add_photo(ai_server, session_id, jpeg("coffee.jpg"), {"notes": "Patient photographed it first."})
    settled(ai_server, session_id, photo["id"])
    expect(gallery_items(desktop).first.locator(".badge-ai")).to_be_visible()

    gallery_items(desktop).first.get_by_role("button", name="Open photo 1 in the viewer").click()
    viewer = desktop.get_by_test_id("image-viewer")
    add = viewer.get_by_test_id("ai-description").get_by_role("button", name="Add to notes")
    expect(add).to_be_visible()
    add.focus()
    desktop.keyboard.press("Enter")  # by keyboard
    expect(viewer.get_by_test_id("ai-add-to-notes")).to_have_text("Added to notes")
    expected = f"Patient photographed it first.\n\n{DESCRIPTION}"
    assert stored(ai_server, session_id, photo["id"])["metadata"]["notes"] == expected
    expect(viewer.locator(".vw-notes dd")).to_have_text(expected)
    desktop.keyboard.press("Escape")
    expect(details(desktop).get_by_label("Notes")).to_have_value(expected)


def test_a_failed_description_says_why(ai_server: Server, chat_server: ChatServer, desktop_factory) -> None:
    chat_server.then(Reply(400, {"error": {"message": "image_url must be a data URL"}}))
    desktop = desktop_factory(ai_server)
    session_id = start_session(desktop, ai_server, encounter="enc-ai-failed")
    record_consent(ai_server, session_id)
    photo = add_photo(ai_server, session_id, jpeg("rocket.jpg"))
    ai = details(desktop).get_by_test_id("ai-description")

    expect(ai.get_by_test_id("ai-description-text")).to_have_text(
        f"No description. {REJECTED}", timeout=20_000
    )
    expect(ai).to_contain_text(LABEL)
    expect(ai.get_by_test_id("ai-add-to-notes")).to_be_hidden()
    expect(gallery_items(desktop).first.locator(".badge-ai")).to_have_count(0)
    assert stored(ai_server, session_id, photo["id"])["analysis"]["reason"] == REJECTED
    assert len(chat_server.requests) == 1  # a 400 is reported, not retried
    ai.scroll_into_view_if_needed()
    check_axe(desktop, "the details panel with a failed AI description")
    shot(desktop, "desktop-ai-failed")


def test_a_description_that_overtakes_its_photo_is_kept(
    ai_server: Server, chat_server: ChatServer, desktop_factory
) -> None:
    """`image.analysed` may reach the page before `image.added` (the stream delivers in order, but a page
    that catches up can see them either way): the photo appears from whichever comes first, and the older
    news does not bring "Describing…" back."""
    desktop = desktop_factory(ai_server)
    session_id = start_session(desktop, ai_server, encounter="enc-ai-order")
    record_consent(ai_server, session_id)
    expect(desktop.get_by_test_id("live-status")).to_have_text("Live")
    desktop.evaluate("window.__consultcam.events.pause()")
    photo = add_photo(ai_server, session_id, jpeg("cat.jpg"))
    described = settled(ai_server, session_id, photo["id"])
    described.pop("urls")
    added = {**described, "analysis": {"status": "pending"}}

    desktop.evaluate(
        """([analysed, added]) => {
          const deliver = window.__consultcam.events.handlers.onEvent;
          deliver({type: "image.analysed", data: {image: analysed}});
          deliver({type: "image.added", data: {image: added}});
        }""",
        [described, added],
    )

    items = gallery_items(desktop)
    expect(items).to_have_count(1)
    expect(items.first).to_have_attribute("data-loaded", "true")
    expect(items.first.locator(".badge-ai")).to_be_visible()
    ai = details(desktop).get_by_test_id("ai-description")
    expect(ai.get_by_test_id("ai-description-text")).to_have_text(DESCRIPTION)
    desktop.evaluate("window.__consultcam.events.resume()")
    expect(desktop.get_by_test_id("live-status")).to_have_text("Live")
    expect(ai.get_by_test_id("ai-description-text")).to_have_text(DESCRIPTION)
    expect(items).to_have_count(1)


def test_without_an_ai_endpoint_nothing_is_shown(server: Server, desktop_factory) -> None:
    desktop = desktop_factory(server)
    session_id = start_session(desktop, server, encounter="enc-ai-off")
    record_consent(server, session_id)
    photo = add_photo(server, session_id, jpeg("coffee.jpg"))
    assert photo["analysis"] == {"status": "disabled"}
    items = gallery_items(desktop)
    expect(items).to_have_count(1)
    expect(items.first).to_have_attribute("data-loaded", "true")
    panel = details(desktop)
    expect(panel.get_by_test_id("metadata-subject")).to_have_text("Photo 1")

    expect(panel.get_by_test_id("ai-description")).to_be_hidden()
    assert not re.search("AI-generated|Describing|AI description", desktop.locator("body").inner_text())
    expect(items.first.locator(".badge-ai")).to_have_count(0)
    items.first.get_by_role("button", name="Open photo 1 in the viewer").click()
    viewer = desktop.get_by_test_id("image-viewer")
    expect(viewer.get_by_test_id("viewer-stage")).to_have_attribute("data-state", "ready")
    expect(viewer.get_by_test_id("ai-description")).to_be_hidden()
    assert "analysis" not in json.dumps(stored(server, session_id, photo["id"])["metadata"])
    shot(desktop, "desktop-ai-off-viewer")
