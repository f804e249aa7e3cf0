"""A small WebDriver BiDi client (W3C WebDriver BiDi, https://w3c.github.io/webdriver-bidi/) over one
WebSocket, enough to drive a stock Firefox ESR started with `--remote-debugging-port`: no geckodriver.

Why our own: Playwright 1.65's BiDi Firefox (`channel="moz-firefox"`) sends commands Firefox ESR does not
have (`emulation.setMediaFeaturesOverride`: "unknown command" when a context opens), Selenium's BiDi rides on
a classic session that only geckodriver creates (and Debian does not package geckodriver), and the Python BiDi
clients on PyPI are young one-person projects. The protocol is JSON commands and events over a WebSocket
(`websockets`, already a dependency of uvicorn[standard]); this module is the transport and the value
(de)serialisation of §7.5 (script.LocalValue / script.RemoteValue), nothing more.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from typing import Any

from websockets.sync.client import connect


class BidiError(RuntimeError):
    """An error response (`{"type": "error", "error": …, "message": …}`, WebDriver BiDi §6.3)."""


class BidiConnection:
    """One BiDi session: `send(method, **params)` blocks until the command's response; events that arrive
    meanwhile are kept in `events` (a list of `{"method", "params"}`), oldest first."""

    def __init__(self, url: str, *, timeout: float = 30) -> None:
        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(connect(url, max_size=None, open_timeout=timeout))
        self._ids = itertools.count(1)
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its `result`; raises BidiError on an error response, TimeoutError
        when no response comes within `timeout` seconds."""
        command_id = next(self._ids)
        self._ws.send(json.dumps({"id": command_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no response to BiDi {method} within {self.timeout} s")
            message = json.loads(self._ws.recv(timeout=remaining))
            if message.get("id") == command_id:
                if message.get("type") == "error":
                    raise BidiError(f"{method}: {message.get('error')}: {message.get('message')}")
                return dict(message.get("result") or {})
            if message.get("type") == "event":
                self.events.append({"method": message["method"], "params": message["params"]})

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()


def to_local(value: Any) -> dict[str, Any]:
    """A Python value (None, bool, int, float, str, list, dict with str keys) as a script.LocalValue."""
    if value is None:
        return {"type": "null"}
    if isinstance(value, bool):
        return {"type": "boolean", "value": value}
    if isinstance(value, int | float):
        return {"type": "number", "value": value}
    if isinstance(value, str):
        return {"type": "string", "value": value}
    if isinstance(value, list | tuple):
        return {"type": "array", "value": [to_local(item) for item in value]}
    if isinstance(value, dict):
        return {"type": "object", "value": [[str(k), to_local(v)] for k, v in value.items()]}
    raise TypeError(f"cannot send {type(value).__name__} to the page")


def from_remote(remote: dict[str, Any]) -> Any:
    """A script.RemoteValue as a Python value; nodes and other platform objects come back as the RemoteValue
    itself (its `sharedId` names a node for input.setFiles and pointer origins)."""
    kind = remote.get("type")
    if kind in ("undefined", "null"):
        return None
    if kind == "number":
        value = remote["value"]
        return {"NaN": float("nan"), "-0": 0.0, "Infinity": float("inf"), "-Infinity": float("-inf")}.get(
            value, value
        )
    if kind in ("string", "boolean", "bigint", "date", "regexp"):
        return remote.get("value")
    if kind in ("array", "set", "nodelist", "htmlcollection"):
        return [from_remote(item) for item in remote.get("value", [])]
    if kind in ("object", "map"):
        return {
            (key if isinstance(key, str) else str(from_remote(key))): from_remote(value)
            for key, value in remote.get("value", [])
        }
    return remote
