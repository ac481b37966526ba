"""axe-core (bundled by ``axe-playwright-python``) and layout checks shared by the browser tests."""

from __future__ import annotations

from typing import Any

from axe_playwright_python.sync_playwright import Axe

BLOCKING = {"serious", "critical"}
_axe = Axe()


def blocking_violations(page: Any) -> list[str]:
    """axe's serious and critical violations on the page as it is now, one line each."""
    result = _axe.run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:4]}"
            for v in result.response["violations"] if v.get("impact") in BLOCKING]


def overflow_px(page: Any) -> int:
    """How many CSS pixels the document is wider than the viewport (0 = no horizontal scroll)."""
    return int(page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"))
