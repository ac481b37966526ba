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

Shared (PostgreSQL, several api / worker processes; ``share``): a conversation's drain first takes
its lease (api/pipeline/lease.py); a process that cannot take it leaves the messages to the holder,
which looks for pending messages again after letting go. Every turn step is fenced by the lease. A
waiter whose turn runs in another process hears of it on the relay bus (Redis) and, in case a hint
is lost, reads the inbox row every ``reply_poll_s``. The sweeper takes up conversations with pending
messages and no live lease (a holder that died) at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.conversations.models import Conversation, InboxItem, InboxStatus, Message
from api.db import is_transient
from api.pipeline.turn import TurnInterrupted, TurnProcessor, TurnResult

if TYPE_CHECKING:
    from api.pipeline.lease import LeaseStore
    from api.relay.bus import RelayBus

log = logging.getLogger("concierge.worker")

# Results of recently finished turns, for a waiter that registers just after its turn ended.
_RECENT = 2048


class ConversationWorker:
    def __init__(self, processor: TurnProcessor, session_factory: sessionmaker[Session]) -> None:
        self.processor = processor
        self.session_factory = session_factory
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        # A drain's first round, known without a query (``submit(only_pending=...)``).
        self._first: dict[str, tuple[str, int, bool]] = {}
        self._waiters: dict[int, list[asyncio.Future[TurnResult | None]]] = {}
        self._recent: OrderedDict[int, TurnResult] = OrderedDict()
        self._closing = False
        self._sweeper: asyncio.Task[None] | None = None
        # Called after each finished turn (e.g. wakes the WhatsApp outbox dispatcher).
        self.on_turn_done: Callable[[TurnResult], None] | None = None
        # Called with the conversation id after each inbound message's turn ends, done or failed
        # (the live relay: the message is now screened, so staff streams may show it).
        self.on_processed: Callable[[str], None] | None = None
        # Shared mode (``share``): leases, the bus waiters listen on, how often they read the database.
        self.leases: LeaseStore | None = None
        self.bus: RelayBus | None = None
        self.reply_poll_s = 1.0
        self._heartbeat: asyncio.Task[None] | None = None

    def share(self, leases: LeaseStore, bus: RelayBus | None, *, reply_poll_s: float = 1.0) -> None:
        """Run alongside other processes on the same (PostgreSQL) database: a conversation's turns
        run where its lease is, every turn step checks the lease, and waiters learn of turns that ran
        elsewhere through ``bus`` (and by reading the database every ``reply_poll_s``)."""
        self.leases = leases
        self.bus = bus
        self.reply_poll_s = reply_poll_s
        self.processor.fence = leases.fence
        self.processor.let_go = leases.let_go
        self.processor.claim = leases.acquire_in
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat(), name="lease-heartbeat")

    def kick(self, conversation_id: str) -> None:
        """There is (or may be) new pending inbound work for this conversation."""
        if self._closing:
            return
        self._dirty.add(conversation_id)
        if conversation_id not in self._tasks:
            task = asyncio.get_running_loop().create_task(self._drain(conversation_id))
            self._tasks[conversation_id] = task

    async def submit(self, conversation_id: str, message_id: int, *, timeout: float | None = None,
                     only_pending: str | None = None, leased: bool = False) -> TurnResult | None:
        """Kick the conversation and wait (at most ``timeout`` seconds) for this message's turn.

        ``only_pending``: the message's inbox id, when it was the conversation's only pending message
        as it was stored (``TurnProcessor.screen_on_receipt``): the drain starts with it instead of
        looking for pending messages; any message stored after it comes with a kick of its own.
        ``leased``: the transaction that stored it also took the conversation's lease for this process.

        Returns the turn's result, or None when it has not finished in time (or was interrupted):
        the message is stored and its replies will follow."""
        if message_id in self._recent:
            return self._recent[message_id]
        fut: asyncio.Future[TurnResult | None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(message_id, []).append(fut)
        if only_pending is not None and conversation_id not in self._tasks:
            self._first[conversation_id] = (only_pending, message_id, leased)
        self.kick(conversation_id)
        try:
            if self.leases is not None:
                return await self._wait_anywhere(conversation_id, message_id, fut, timeout)
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            return None
        finally:
            waiting = self._waiters.get(message_id, [])
            if fut in waiting:
                waiting.remove(fut)
                if not waiting:
                    self._waiters.pop(message_id, None)

    async def _wait_anywhere(self, conversation_id: str, message_id: int, fut: asyncio.Future[TurnResult | None],
                             timeout: float | None) -> TurnResult | None:
        """The turn may run here (``fut``) or in the process holding the lease: a relay hint for the
        conversation, or ``reply_poll_s`` without one, sends us to read the inbox row."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        async with contextlib.AsyncExitStack() as stack:
            sub = None if self.bus is None else await stack.enter_async_context(self.bus.subscribe(conversation_id))
            while True:
                left = self.reply_poll_s if deadline is None else min(self.reply_poll_s, deadline - loop.time())
                if left <= 0:
                    raise TimeoutError
                waits: set[asyncio.Future[object]] = set()
                if not fut.done():
                    waits.add(asyncio.ensure_future(asyncio.shield(fut)))
                if sub is not None:
                    waits.add(asyncio.ensure_future(sub.wait(left)))
                try:
                    if waits:
                        await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                    else:
                        await asyncio.sleep(left)
                finally:
                    for w in waits:
                        w.cancel()
                if fut.done() and fut.result() is not None:
                    return fut.result()
                if not fut.done() and conversation_id in self._tasks:
                    continue  # this process is on it: its own result comes here (or None if it lets go)
                # None from here means "not finished by this process" (interrupted, or the lease went
                # elsewhere): only the database can tell.
                try:
                    found = await asyncio.to_thread(self._finished, message_id)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    found = None  # the database is away: wait on, until the deadline
                if found is not None:
                    return found

    def _finished(self, message_id: int) -> TurnResult | None:
        """The turn's result as the database has it, once the inbox row is no longer pending."""
        with self.session_factory() as session:
            status = session.execute(select(InboxItem.status).where(InboxItem.message_id == message_id)).scalar()
            if status is None or status == InboxStatus.pending:
                return None
            replies = session.execute(select(Message.id).where(Message.in_reply_to == message_id)
                                      .order_by(Message.id)).scalars().all()
            return TurnResult(message_id, list(replies))

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
        """Run every pending turn in order; again if a message came meanwhile. Shared, each round
        holds the lease: take it first, let go after."""
        leases = self.leases
        try:
            while not self._closing:
                self._dirty.discard(conversation_id)
                first = self._first.pop(conversation_id, None)
                try:
                    held = first is not None and first[2]  # taken as the message was stored
                    if leases is not None and not held and not await asyncio.to_thread(leases.acquire,
                                                                                         conversation_id):
                        # Held by another process: it sees this conversation's new messages when it
                        # lets go; if it died, the sweeper takes over once its lease has expired.
                        return
                    pending = [first[:2]] if first is not None else await asyncio.to_thread(self._pending,
                                                                                             conversation_id)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    # The sweeper comes back for this conversation once the database answers.
                    log.warning("conversation %s: database unavailable (%s); left for the sweeper",
                                conversation_id, type(exc).__name__)
                    return
                result: TurnResult | None = None
                for i, (inbox_id, message_id) in enumerate(pending):
                    # Shared, the round's last turn lets go of the lease in its last step (TurnResult.let_go).
                    result = await self._run_turn(conversation_id, inbox_id, message_id,
                                                  last=leases is not None and i == len(pending) - 1)
                    if result is None:
                        # Interrupted: later messages wait, in order, for the sweeper. Shared, the lease
                        # stays ours (this process resumes the turn with what Rasa already said); if we
                        # are gone, it expires and another process resumes.
                        return
                if result is not None and result.let_go:
                    # A kick that came while the turn ran is for a message its check may have missed.
                    if not (result.more_pending or conversation_id in self._dirty):
                        return
                elif not await self._again(conversation_id, leases):
                    return
        finally:
            self._tasks.pop(conversation_id, None)

    async def _again(self, conversation_id: str, leases: LeaseStore | None) -> bool:
        """After a round of turns: whether the conversation may have new pending messages. Every new
        inbox row is followed by a kick (which marks the conversation dirty). Shared, let go of the
        lease and also look in the database: a kick that found the lease still ours (in another
        process) left its message to us."""
        if leases is None:
            # Without a kick there is nothing new, and no query to make (on SQLite every query takes
            # the write lock that webhook acks wait for).
            return conversation_id in self._dirty
        try:
            # A kick that came while the check ran is for a message its query may have missed.
            return await asyncio.to_thread(leases.release_and_check, conversation_id) \
                or conversation_id in self._dirty
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("conversation %s: lease not released (%s); it expires", conversation_id,
                        type(exc).__name__)
            return False

    async def _beat(self) -> None:
        """Renew this process's leases every third of the lease time."""
        assert self.leases is not None
        interval = self.leases.lease_s / 3
        loop = asyncio.get_running_loop()
        # Its own thread: under load the shared pool is full of turn steps waiting for their turn.
        beat_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease-heartbeat")
        try:
            await self._beat_loop(loop, beat_thread, interval)
        finally:
            beat_thread.shutdown(wait=False)

    async def _beat_loop(self, loop: asyncio.AbstractEventLoop, beat_thread: concurrent.futures.Executor,
                         interval: float) -> None:
        leases = self.leases
        assert leases is not None
        reachable = True
        while not self._closing:
            await asyncio.sleep(interval)
            try:
                await loop.run_in_executor(beat_thread, leases.heartbeat)
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("lease heartbeat failed")
                elif reachable:
                    log.warning("lease heartbeat: database unreachable (%s)", type(exc).__name__)
                reachable = False
                continue
            if not reachable:
                log.info("lease heartbeat: database reachable again")
                reachable = True

    async def _run_turn(self, conversation_id: str, inbox_id: str, message_id: int, *,
                        last: bool = False) -> TurnResult | None:
        """One message's turn, ended one of the three ways; None when interrupted."""
        try:
            result = await self.processor.process(inbox_id, last=last)
        except TurnInterrupted as exc:
            log.warning("turn for message %s interrupted, left pending: %s", message_id, exc)
            self._release(message_id)
            return None
        except Exception as exc:
            log.exception("turn failed for message %s; setting it aside", message_id)
            try:
                result = await self.processor.set_aside(inbox_id, f"{type(exc).__name__}: {exc}")
            except TurnInterrupted as again:
                log.warning("message %s could not be set aside, left pending: %s", message_id, again)
                self._release(message_id)
                return None
            except Exception:
                log.exception("message %s could not be set aside; left pending", message_id)
                self._release(message_id)
                return None
        self._processed(conversation_id)
        self._resolve(message_id, result)
        if self.on_turn_done is not None:
            self.on_turn_done(result)
        return result

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

    def _to_take_up(self, channels: tuple[str, ...], skip_channels: tuple[str, ...]) -> list[tuple[str, bool]]:
        """(conversation, whether to wait a sweep before taking it up). Shared: a lease that expired
        (its holder died) or is ours is taken up at once; pending work without a lease row may be a
        kick on its way in another process, so it waits one sweep like everything on a private database."""
        if self.leases is not None:
            return self.leases.orphans(channels, skip_channels)
        return [(cid, True) for cid in self._conversations_with_pending(channels, skip_channels)]

    def recover(self, *, channels: tuple[str, ...] = (), skip_channels: tuple[str, ...] = ()) -> int:
        """Kick every conversation with inbound work left from a previous run (only those of
        ``channels`` when given; never those of ``skip_channels``, which another process serves).
        Shared: only those no live process holds."""
        conv_ids = [cid for cid, _wait in self._to_take_up(channels, skip_channels)]
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
                found = await asyncio.to_thread(self._to_take_up, channels, skip_channels)
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
            # Shared, a conversation whose lease expired (its holder died) is taken up at once.
            idle = [cid for cid, wait in found if cid not in self._tasks and (cid in seen or not wait)]
            seen = {cid for cid, _wait in found}
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
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        if self.leases is not None:
            try:  # conversations this process kept (interrupted turns) go to the others now
                await asyncio.to_thread(self.leases.release_all)
            except Exception as exc:
                log.warning("leases not released at shutdown (%s); they expire", type(exc).__name__)
            self.leases.close()
        for message_id in list(self._waiters):
            self._release(message_id)
