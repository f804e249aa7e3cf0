"""The terms this process accepts and speaks: the packaged list until `use` installs the practice's
(the packaged list plus its extension), once, at start-up."""

from __future__ import annotations

from consultcam.terminology.loading import TERMINOLOGY
from consultcam.terminology.model import Terminology

_active = TERMINOLOGY


def active() -> Terminology:
    """The terms this process accepts and speaks: the packaged list, plus the practice's extension once
    `use` has installed it (at start-up, from the settings)."""
    return _active


def use(terminology: Terminology) -> None:
    """Make `terminology` the process's terms (`Runtime.create` installs `Settings.terminology`), so
    requests, commits and the terminology endpoint all see the same list."""
    global _active
    _active = terminology
