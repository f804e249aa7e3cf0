"""Accessibility checks shared by the browser tests: axe-core (shipped by axe-playwright-python), run in the
page."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import Page

AXE_JS = Path(__import__("axe_playwright_python").__file__).parent / "axe.min.js"


def check_axe(page: Page, what: str) -> None:
    """Run axe-core (WCAG 2.x A/AA and best-practice rules) on the page as it is, dialogs included; fail on
    any violation, naming the rule and up to three elements. `what` names the screen in the failure."""
    # Let finite animations (a card fading in) end first: axe measures colours as they are drawn.
    page.evaluate(
        "() => Promise.all(document.getAnimations()"
        ".filter(a => a.effect?.getTiming().iterations !== Infinity).map(a => a.finished))"
    )
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_JS.read_text())  # the page's CSP forbids inline scripts; evaluate is not one
    result = page.evaluate(
        "() => axe.run(document).then(r => r.violations.map(v => ({id: v.id, impact: v.impact,"
        " help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})))"
    )
    assert result == [], f"axe on {what}:\n{json.dumps(result, indent=1)}"
