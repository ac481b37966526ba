"""Per-conversation serial processing.

Channels persist an inbound message (and its inbox row) and then ``kick`` the worker. For
each conversation at most one drain task runs; it processes that conversation's pending
inbox rows strictly in message order, so two messages of one conversation are never
processed at once or out of order, while different conversations proceed concurrently.
Callers that want the replies (web chat) await ``submit(..., timeout=...)``: the wait is bounded,
and ``None`` means "stored, still being processed" (the replies follow on the message stream).

Every turn ends in one of three ways, none of which loses the message:
- done: replies queued (the usual case, including Rasa failures, which get a fallback);
- interrupted: the database stayed unreachable past the turn's retry deadline, or the worker is
  stopping. The row stays pending; the drain stops there (order is kept) and the sweeper, which
  looks for pending rows every ``sweep_interval_s``, takes the conversation up again;
- set aside: any other failure. The message is marked failed, kept, audited, and the HCP told.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.conversations.models import Conversation, InboxItem, InboxStatus
from api.db import is_transient
from api.pipeline.turn import TurnInterrupted, TurnProcessor, TurnResult

log = logging.getLogger("concierge.worker")

# Results of recently finished turns, for a waiter that registers just after its turn ended.
_RECENT = 2048


class ConversationWorker:
    def __init__(self, processor: TurnProcessor, session_factory: sessionmaker[Session]) -> None:
        self.processor = processor
        self.session_factory = session_factory
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        self._waiters: dict[int, list[asyncio.Future[TurnResult | None]]] = {}
        self._recent: OrderedDict[int, TurnResult] = OrderedDict()
        self._closing = False
        self._sweeper: asyncio.Task[None] | None = None
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

    async def submit(self, conversation_id: str, message_id: int, *, timeout: float | None = None) -> TurnResult | None:
        """Kick the conversation and wait (at most ``timeout`` seconds) for this message's turn.

        Returns the turn's result, or None when it has not finished in time (or was interrupted):
        the message is stored and its replies will follow."""
        if message_id in self._recent:
            return self._recent[message_id]
        fut: asyncio.Future[TurnResult | None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(message_id, []).append(fut)
        self.kick(conversation_id)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            waiting = self._waiters.get(message_id, [])
            if fut in waiting:
                waiting.remove(fut)
                if not waiting:
                    self._waiters.pop(message_id, None)
            return None

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
            while not self._closing:
                self._dirty.discard(conversation_id)
                try:
                    pending = await asyncio.to_thread(self._pending, conversation_id)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    # The sweeper comes back for this conversation once the database answers.
                    log.warning("conversation %s: cannot read its pending messages (%s); left for the sweeper",
                                conversation_id, type(exc).__name__)
                    return
                if not pending:
                    if conversation_id in self._dirty:
                        continue
                    return
                for inbox_id, message_id in pending:
                    if not await self._run_turn(conversation_id, inbox_id, message_id):
                        return  # interrupted: later messages wait, in order, for the sweeper
                if conversation_id not in self._dirty:
                    # Every new inbox row is followed by a kick (which marks the conversation
                    # dirty): without one there is nothing new, and no query to make (on SQLite
                    # every query takes the write lock that webhook acks wait for).
                    return
        finally:
            self._tasks.pop(conversation_id, None)

    async def _run_turn(self, conversation_id: str, inbox_id: str, message_id: int) -> bool:
        """One message's turn, ended one of the three ways; False when interrupted."""
        try:
            result = await self.processor.process(inbox_id)
        except TurnInterrupted as exc:
            log.warning("turn for message %s interrupted, left pending: %s", message_id, exc)
            self._release(message_id)
            return False
        except Exception as exc:
            log.exception("turn failed for message %s; setting it aside", message_id)
            try:
                result = await self.processor.set_aside(inbox_id, f"{type(exc).__name__}: {exc}")
            except TurnInterrupted as again:
                log.warning("message %s could not be set aside, left pending: %s", message_id, again)
                self._release(message_id)
                return False
            except Exception:
                log.exception("message %s could not be set aside; left pending", message_id)
                self._release(message_id)
                return False
        self._processed(conversation_id)
        self._resolve(message_id, result)
        if self.on_turn_done is not None:
            self.on_turn_done(result)
        return True

    def _processed(self, conversation_id: str) -> None:
        if self.on_processed is not None:
            try:
                self.on_processed(conversation_id)
            except Exception:
                log.exception("on_processed hook failed for conversation %s", conversation_id)

    def _resolve(self, message_id: int, result: TurnResult) -> None:
        self._recent[message_id] = result
        while len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
        for fut in self._waiters.pop(message_id, []):
            if not fut.done():
                fut.set_result(result)

    def _release(self, message_id: int) -> None:
        """Waiters of a turn that will finish later: they answer "stored, replies to follow"."""
        for fut in self._waiters.pop(message_id, []):
            if not fut.done():
                fut.set_result(None)

    def _conversations_with_pending(self, channels: tuple[str, ...], skip_channels: tuple[str, ...]) -> list[str]:
        stmt = (select(InboxItem.conversation_id).join(Conversation, Conversation.id == InboxItem.conversation_id)
                .where(InboxItem.status == InboxStatus.pending).distinct())
        if channels:
            stmt = stmt.where(Conversation.channel.in_(channels))
        if skip_channels:
            stmt = stmt.where(Conversation.channel.not_in(skip_channels))
        with self.session_factory() as session:
            return list(session.execute(stmt).scalars().all())

    def recover(self, *, channels: tuple[str, ...] = (), skip_channels: tuple[str, ...] = ()) -> int:
        """Kick every conversation with inbound work left from a previous run (only those of
        ``channels`` when given; never those of ``skip_channels``, which another process serves)."""
        conv_ids = self._conversations_with_pending(channels, skip_channels)
        for cid in conv_ids:
            self.kick(cid)
        return len(conv_ids)

    def start_sweeper(self, interval_s: float, *, channels: tuple[str, ...] = (),
                      skip_channels: tuple[str, ...] = ()) -> None:
        """Every ``interval_s`` seconds, take up conversations with pending messages and no drain
        running (turns interrupted by an outage, rows left by a failed drain). 0: never."""
        if interval_s > 0 and self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep(interval_s, channels, skip_channels), name="inbox-sweeper")

    async def _sweep(self, interval_s: float, channels: tuple[str, ...], skip_channels: tuple[str, ...]) -> None:
        reachable = True
        seen: set[str] = set()
        while not self._closing:
            await asyncio.sleep(interval_s)
            try:
                conv_ids = await asyncio.to_thread(self._conversations_with_pending, channels, skip_channels)
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("inbox sweep failed")
                elif reachable:  # one line per change of state, not one per sweep
                    log.warning("inbox sweep: database unreachable (%s); trying every %gs",
                                type(exc).__name__, interval_s)
                reachable = False
                continue
            if not reachable:
                log.info("inbox sweep: database reachable again")
                reachable = True
            # Only conversations still pending a whole interval later: a turn in flight in another
            # process (or another app on the same database) finishes long before that, so it is not
            # taken up twice; an interrupted turn is resumed one interval later than it was seen.
            idle = [cid for cid in conv_ids if cid not in self._tasks and cid in seen]
            seen = set(conv_ids)
            if idle:
                log.info("inbox sweep: resuming %d conversation(s) with pending messages", len(idle))
            for cid in idle:
                self.kick(cid)

    async def idle(self) -> None:
        """Wait until no conversation has a drain task running (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        """Stop: steps waiting for the database give up (their rows stay pending for the next start),
        running turns end, and every waiter is answered."""
        self._closing = True
        self.processor.stopping.set()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        await self.idle()
        for message_id in list(self._waiters):
            self._release(message_id)
