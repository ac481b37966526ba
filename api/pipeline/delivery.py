"""Delivery after commit: what a staff action (a reply, a medical answer, a request update) just
queued in the outbox goes out once its transaction committed."""

from __future__ import annotations

from api.db import unit_of_work
from api.outbox import deliver_pending
from api.state import AppState


def deliver_after_commit(state: AppState, conversation_id: str) -> None:
    """Push what was just committed: web chat in-process now, WhatsApp via its dispatcher."""
    processor = state.worker.processor
    with unit_of_work(state.session_factory) as session:
        deliver_pending(session, conversation_id, senders=processor.senders, gate=processor.gate,
                        now=state.clock.now())
    dispatcher = state.whatsapp_dispatcher
    if dispatcher is not None:
        dispatcher.kick()
