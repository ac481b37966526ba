"""Per-conversation serial processing.

Channels persist an inbound message (and its inbox row) and then ``kick`` the worker. For
each conversation at most one drain task runs; it processes that conversation's pending
inbox rows strictly in message order, so two messages of one conversation are never
processed at once or out of order, while different conversations proceed concurrently.
Callers that want the replies (web chat) await ``wait_for(message_id)``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.conversations.models import Conversation, InboxItem, InboxStatus
from api.conversations.turn import TurnProcessor, TurnResult

log = logging.getLogger("concierge.worker")


class ConversationWorker:
    def __init__(self, processor: TurnProcessor, session_factory: sessionmaker[Session]) -> None:
        self.processor = processor
        self.session_factory = session_factory
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        self._waiters: dict[int, list[asyncio.Future[TurnResult]]] = {}
        self._closing = False
        # Called after each finished turn (e.g. wakes the WhatsApp outbox dispatcher).
        self.on_turn_done: Callable[[TurnResult], None] | None = None
        # Called with the conversation id after each inbound message's turn ends, done or failed
        # (the live relay: the message is now screened, so staff streams may show it).
        self.on_processed: Callable[[str], None] | None = None

    def kick(self, conversation_id: str) -> None:
        """There is (or may be) new pending inbound work for this conversation."""
        if self._closing:
            return
        self._dirty.add(conversation_id)
        if conversation_id not in self._tasks:
            task = asyncio.get_running_loop().create_task(self._drain(conversation_id))
            self._tasks[conversation_id] = task

    async def submit(self, conversation_id: str, message_id: int) -> TurnResult:
        """Kick the conversation and wait for this message's turn to finish."""
        fut: asyncio.Future[TurnResult] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(message_id, []).append(fut)
        self.kick(conversation_id)
        return await fut

    def _pending(self, conversation_id: str) -> list[tuple[str, int]]:
        with self.session_factory() as session:
            rows = session.execute(
                select(InboxItem.id, InboxItem.message_id)
                .where(InboxItem.conversation_id == conversation_id,
                       InboxItem.status == InboxStatus.pending)
                .order_by(InboxItem.message_id)
            ).all()
            return [(r[0], r[1]) for r in rows]

    async def _drain(self, conversation_id: str) -> None:
        try:
            while True:
                self._dirty.discard(conversation_id)
                pending = await asyncio.to_thread(self._pending, conversation_id)
                if not pending:
                    if conversation_id in self._dirty:
                        continue
                    return
                for inbox_id, message_id in pending:
                    try:
                        result = await self.processor.process(inbox_id)
                    except Exception as exc:
                        log.exception("turn failed for message %s", message_id)
                        await asyncio.to_thread(self._mark_failed, inbox_id, repr(exc))
                        self._processed(conversation_id)
                        self._resolve_error(message_id, exc)
                        continue
                    self._processed(conversation_id)
                    self._resolve(message_id, result)
                    if self.on_turn_done is not None:
                        self.on_turn_done(result)
                if conversation_id not in self._dirty:
                    # Every new inbox row is followed by a kick (which marks the conversation
                    # dirty): without one there is nothing new, and no query to make (on SQLite
                    # every query takes the write lock that webhook acks wait for).
                    return
        finally:
            self._tasks.pop(conversation_id, None)

    def _processed(self, conversation_id: str) -> None:
        if self.on_processed is not None:
            try:
                self.on_processed(conversation_id)
            except Exception:
                log.exception("on_processed hook failed for conversation %s", conversation_id)

    def _mark_failed(self, inbox_id: str, error: str) -> None:
        with self.session_factory.begin() as session:
            item = session.get(InboxItem, inbox_id)
            if item is not None:
                item.status = InboxStatus.failed
                item.error = error[:2000]

    def _resolve(self, message_id: int, result: TurnResult) -> None:
        for fut in self._waiters.pop(message_id, []):
            if not fut.done():
                fut.set_result(result)

    def _resolve_error(self, message_id: int, exc: Exception) -> None:
        for fut in self._waiters.pop(message_id, []):
            if not fut.done():
                fut.set_exception(exc)

    def recover(self, *, channels: tuple[str, ...] = (), skip_channels: tuple[str, ...] = ()) -> int:
        """Kick every conversation with inbound work left from a previous run (only those of
        ``channels`` when given; never those of ``skip_channels``, which another process serves)."""
        stmt = (select(InboxItem.conversation_id).join(Conversation, Conversation.id == InboxItem.conversation_id)
                .where(InboxItem.status == InboxStatus.pending).distinct())
        if channels:
            stmt = stmt.where(Conversation.channel.in_(channels))
        if skip_channels:
            stmt = stmt.where(Conversation.channel.not_in(skip_channels))
        with self.session_factory() as session:
            conv_ids = session.execute(stmt).scalars().all()
        for cid in conv_ids:
            self.kick(cid)
        return len(conv_ids)

    async def idle(self) -> None:
        """Wait until no conversation has a drain task running (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        self._closing = True
        await self.idle()
