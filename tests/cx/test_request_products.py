"""Requests stored with free text as their product (before the forms validated it) are left as they
are, but never shown as a product on the CX dashboard."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.conversations.models import Conversation
from api.requests.models import ServiceRequest
from feedback import kpis
from feedback.kpis import KpiFilter
from tests.cx.dataset import build


def test_a_request_whose_product_is_free_text_is_counted_but_never_a_product(session: Session) -> None:
    d = build(session)
    conv = Conversation(channel="webchat", state="bot", audience="hcp", failed_turns=0, created_at=d.day0)
    session.add(conv)
    session.flush()
    junk = [f"two boxes {d.marker}", f"please ring my practice {d.marker}"]
    for i, text in enumerate(junk):
        session.add(ServiceRequest(reference=f"SR-{uuid.uuid4().hex[:12]}", kind="samples", team="rep",
                                   status="open", conversation_id=conv.id, channel="webchat", product=text,
                                   details={"product": text}, created_at=d.day0 + timedelta(hours=3 + i),
                                   sla_due_at=d.day0 + timedelta(days=3)))
    session.flush()
    f = KpiFilter(d.since, d.until)
    by = kpis.by_product(session, f, use_rollups=False)
    assert set(by) == {d.p1, d.p2}
    assert not any(text in by for text in junk)
    # the rows themselves are untouched, and still count in the all-products tiles
    stored = set(session.execute(select(ServiceRequest.product).where(ServiceRequest.conversation_id == conv.id))
                 .scalars())
    assert stored == set(junk)
    everything = kpis.tiles(session, f, use_rollups=False)
    assert everything.requests.created >= 2 + sum(by[p].requests.created for p in by)
