"""The inbox sweeper takes up a conversation only when it is still pending one interval later: a turn in
flight elsewhere (another api process on the same database) is not processed twice."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

from api.pipeline.worker import ConversationWorker


class _Worker(ConversationWorker):
    def __init__(self, pending: list[list[str]]) -> None:
        processor = SimpleNamespace(stopping=threading.Event())  # only what close() touches
        super().__init__(processor=processor, session_factory=None)  # type: ignore[arg-type]
        self.pending = pending
        self.kicked: list[tuple[int, str]] = []
        self.sweeps = 0

    def _conversations_with_pending(self, channels: Any, skip_channels: Any) -> list[str]:
        found = self.pending[min(self.sweeps, len(self.pending) - 1)]
        self.sweeps += 1
        return list(found)

    def kick(self, conversation_id: str) -> None:
        self.kicked.append((self.sweeps, conversation_id))


def test_only_conversations_pending_in_two_sweeps_in_a_row_are_taken_up() -> None:
    # sweep 1: a turn in flight elsewhere ("busy") and an interrupted one ("stuck");
    # sweep 2: "busy" finished, "stuck" still pending, "new" just arrived; sweep 3: "new" finished.
    worker = _Worker([["busy", "stuck"], ["stuck", "new"], ["stuck"], []])

    async def run() -> None:
        worker.start_sweeper(0.01)
        while worker.sweeps < 4:
            await asyncio.sleep(0.01)
        await worker.close()

    asyncio.run(run())
    taken = {cid for _sweep, cid in worker.kicked}
    assert "stuck" in taken
    assert "busy" not in taken and "new" not in taken
    assert min(s for s, cid in worker.kicked if cid == "stuck") == 2  # one interval after it was first seen
