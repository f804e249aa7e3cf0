"""bench/README.md holds one section per benchmark; each benchmark rewrites only its own section."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"
TITLE = "# Benchmarks\n\nEach section is written by the benchmark it names; run them with `make bench`.\n"


def replace_section(name: str, text: str) -> None:
    """Put `text` between `<!-- begin name -->` and `<!-- end name -->` in bench/README.md (appended when
    the section is new)."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    current = README.read_text() if README.exists() else TITLE
    block = f"{begin}\n{text.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _: block, current)
    else:
        updated = f"{current.rstrip()}\n\n{block}\n"
    README.write_text(updated)
