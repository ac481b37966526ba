from __future__ import annotations

from datetime import date

import pytest

from knowledge.gate import Recipient, gate_reason
from knowledge.library import LibraryItem

TODAY = date(2026, 11, 23)


def _item(**over: object) -> LibraryItem:
    base: dict[str, object] = dict(
        id="A", version=1, title="t", product="p", kind="faq", audience=("hcp",), markets=("US",),
        status="approved", approval_code="X", approved_at=date(2026, 1, 1), expires_at=date(2027, 1, 1),
        questions=(), body="b")
    base.update(over)
    return LibraryItem(**base)  # type: ignore[arg-type]


HCP_US = Recipient("US", "hcp", verified=True)


def test_approved_item_in_dates_market_and_audience_passes() -> None:
    assert gate_reason(_item(), HCP_US, TODAY) is None


@pytest.mark.parametrize(("over", "recipient", "reason"), [
    ({"status": "draft"}, HCP_US, "status is draft"),
    ({"status": "withdrawn"}, HCP_US, "status is withdrawn"),
    ({"approved_at": date(2026, 12, 1)}, HCP_US, "not yet approved"),
    ({"expires_at": date(2026, 11, 23)}, HCP_US, "expired"),
    ({"expires_at": date(2026, 6, 30)}, HCP_US, "expired"),
    ({}, Recipient("DE", "hcp", True), "not approved for market DE"),
    ({}, Recipient("US", "patient", False), "not approved for audience patient"),
    ({"kind": "srd"}, Recipient("US", "hcp", verified=False), "needs a verified HCP"),
    ({"kind": "pi"}, Recipient("US", "hcp", verified=False), "needs a verified HCP"),
    ({"kind": "pi", "audience": ("hcp", "patient")}, Recipient("US", "patient", verified=True),
     "needs a verified HCP"),
])
def test_each_gate_blocks_with_a_reason(over: dict[str, object], recipient: Recipient, reason: str) -> None:
    got = gate_reason(_item(**over), recipient, TODAY)
    assert got is not None and reason in got


def test_verified_hcp_may_receive_srd() -> None:
    assert gate_reason(_item(kind="srd"), HCP_US, TODAY) is None
