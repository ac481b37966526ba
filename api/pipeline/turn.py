"""One inbound message, start to finish.

Order is the point of this module:
1. the safety screen runs first, in every state, and what it finds is committed before
   anything else happens (an AE has its day 0 even if the process dies a moment later);
2. a conversation with a human (or waiting for one) is relayed, not sent to Rasa;
3. otherwise Rasa is asked, within a deadline of our own; when it fails the HCP gets an
   honest fallback that offers a person, and the failure is recorded;
4. replies are persisted with their outbox entries and delivered in one transaction.

Each step is one transaction. A step that fails on a transient database error (a lock, a dropped
connection, the server down for a while) is tried again with backoff until ``transient_deadline_s``;
the outcome of the screening step is stored with the inbox row, so neither a retry nor a re-run after
a crash screens twice or asks Rasa twice. If the database stays away past the deadline (or the worker
is stopping) the turn raises ``TurnInterrupted`` and its inbox row stays pending for the sweeper; any
other failure sets the message aside (``set_aside``) and tells the HCP.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from api.audit import service as audit
from api.clock import Clock
from api.content import render
from api.conversations import ae_turn, copy, gibberish, spelling
from api.conversations import service as conversations
from api.conversations.drafts import Button, ContentRef, ReplyDraft
from api.conversations.models import (
    Channel,
    Conversation,
    ConversationState,
    InboxItem,
    InboxStatus,
    Message,
    MessageStatus,
)
from api.db import is_transient, unit_of_work
from api.errors import ContentGated
from api.handoffs import routing, waiting
from api.handoffs import service as handoffs
from api.handoffs.hours import DEFAULT_HOURS, StaffHours
from api.hcps import intake
from api.outbox import ChannelSender, SendGate, deliver_pending
from api.rasa.client import RasaClient, RasaFailure

log = logging.getLogger("concierge.turn")

# Outcomes of ``screen_on_receipt`` kept for this process's worker; a turn another process runs (shared
# mode) leaves its entry behind, so the oldest go (the database has every outcome anyway).
_PRESCREENED_KEPT = 1024


class SafetyOutcomeLike(Protocol):
    replies: list[ReplyDraft]
    stop_processing: bool


# (session, conversation, message, now) -> outcome; runs inside the first transaction
SafetyHook = Callable[[Session, Conversation, Message, datetime], SafetyOutcomeLike]


@dataclass
class NoSafetyFindings:
    replies: list[ReplyDraft] = field(default_factory=list)
    stop_processing: bool = False


def null_safety_hook(session: Session, conv: Conversation, msg: Message, now: datetime) -> SafetyOutcomeLike:
    return NoSafetyFindings()


@dataclass
class TurnResult:
    message_id: int
    reply_ids: list[int]
    rasa_failure: str | None = None
    # Web chat: what the HCP's page shows once the turn's last step committed — its replies (as stored,
    # detached from the session) and the request for a person it waits for — so the request that waits
    # for the turn answers without reading them back. None: not taken (another path ended the turn);
    # read them from the database.
    page: TurnPage | None = None
    # Shared mode, a drain's last turn (``process(last=True)``): its last step let go of the conversation's
    # lease as it committed, and whether other messages of the conversation were pending then.
    let_go: bool = False
    more_pending: bool = False


@dataclass(frozen=True)
class TurnPage:
    replies: tuple[Message, ...]
    waiting: waiting.Waiting | None


class TurnInterrupted(Exception):
    """The turn cannot finish now (the database stayed unreachable past the deadline, or the worker
    is stopping). Nothing is lost: its inbox row stays pending and is taken up again."""


class LeaseLost(TurnInterrupted):
    """Another process holds the conversation's lease now (api/pipeline/lease.py): it runs the turn."""


@dataclass
class ScreenedTurn:
    conversation_id: str
    message_id: int
    rasa_text: str
    ask_rasa: bool
    safety_replies: list[ReplyDraft]
    done: TurnResult | None = None
    intake: intake.IntakeTurn | None = None
    # The screen recorded an adverse event from this message: one acknowledgement, then only
    # Rasa's substantive replies (api/conversations/ae_turn.py).
    ae_turn: bool = False
    # An adverse-event message that also asked something.
    ae_question: bool = False
    # The screen read a typed ask for a person ("talk to a human"): honoured without Rasa too.
    handoff: bool = False
    # Waiting for a person (handoff queued, nobody has it yet): the bot answers, and a message it
    # could not answer is acknowledged with the request's reference (api/handoffs/waiting.py).
    waiting: bool = False
    # Whether a process taking up the turn was counted in ``inbox.attempts``: not yet for a turn
    # screened when its message was stored (``screen_on_receipt``); its last step counts it. Not stored.
    counted: bool = True
    # Screened on receipt in shared mode: the storing transaction also took the conversation's lease
    # for this process (``claim``), so the drain that runs the turn starts without taking it. Not stored.
    leased: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"rasa_text": self.rasa_text, "ask_rasa": self.ask_rasa,
                "safety_replies": [r.to_dict() for r in self.safety_replies],
                "intake": None if self.intake is None else self.intake.to_dict(),
                "ae_turn": self.ae_turn, "ae_question": self.ae_question, "handoff": self.handoff,
                "waiting": self.waiting}

    @classmethod
    def from_dict(cls, conversation_id: str, message_id: int, data: dict[str, Any]) -> ScreenedTurn:
        step = data.get("intake")
        return cls(conversation_id, message_id, str(data.get("rasa_text", "")), bool(data.get("ask_rasa")),
                   [ReplyDraft.from_dict(r) for r in data.get("safety_replies", [])],
                   intake=None if step is None else intake.IntakeTurn.from_dict(step),
                   ae_turn=bool(data.get("ae_turn")), ae_question=bool(data.get("ae_question")),
                   handoff=bool(data.get("handoff")), waiting=bool(data.get("waiting")))


def drafts_from_rasa(messages: list[dict[str, Any]]) -> tuple[list[ReplyDraft], bool]:
    """Rasa REST output → drafts. Returns (drafts, turn_failed)."""
    drafts: list[ReplyDraft] = []
    turn_failed = False
    for m in messages:
        custom = m.get("custom") if isinstance(m.get("custom"), dict) else None
        if custom is not None:
            turn_failed = turn_failed or bool(custom.get("turn_failed"))
            buttons = [Button(str(b["title"]), str(b["payload"]))
                       for b in custom.get("buttons", []) if "title" in b and "payload" in b]
            ref = custom.get("content_ref")
            if isinstance(ref, dict):
                drafts.append(ReplyDraft(
                    buttons=buttons,
                    content_ref=ContentRef(str(ref["content_id"]), int(ref["version"]),
                                           ref.get("answer_id")),
                ))
            elif custom.get("text"):
                drafts.append(ReplyDraft(text=str(custom["text"]), buttons=buttons))
            continue
        text = m.get("text")
        if isinstance(text, str) and text:
            buttons = [Button(str(b.get("title", "")), str(b.get("payload", "")))
                       for b in m.get("buttons") or [] if isinstance(b, dict)]
            drafts.append(ReplyDraft(text=text, buttons=buttons))
    return drafts, turn_failed


class TurnProcessor:
    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        rasa: RasaClient,
        clock: Clock,
        senders: Mapping[str, ChannelSender],
        gate: SendGate,
        default_market: str,
        safety_hook: SafetyHook = null_safety_hook,
        handoff_hook: Callable[[Session, Conversation, Message, datetime, str], ReplyDraft] | None = None,
        hours: StaffHours = DEFAULT_HOURS,
    ) -> None:
        self.session_factory = session_factory
        self.rasa = rasa
        self.clock = clock
        self.senders = senders
        self.gate = gate
        self.default_market = default_market
        self.safety_hook = safety_hook
        self.handoff_hook = handoff_hook
        self.hours = hours
        self.stopping = threading.Event()
        # Several processes on one database (api/pipeline/lease.py): called last in each step's
        # transaction; raises (a ``TurnInterrupted``) when this process no longer holds the conversation.
        self.fence: Callable[[Session, str], None] | None = None
        # Shared mode: the fence of a drain's last step, which also lets go of the lease in that step's
        # transaction; returns whether other messages of the conversation are pending (api/pipeline/lease.py).
        self.let_go: Callable[[Session, str, str], bool] | None = None
        # Shared mode: take the conversation's lease in the caller's transaction (``screen_on_receipt``).
        self.claim: Callable[[Session, str], bool] | None = None
        # Turns interrupted after Rasa answered (inbox id -> what _finish needs), until resumed.
        self._unfinished: dict[str, tuple[ScreenedTurn, list[dict[str, Any]], str | None]] = {}
        # Turns screened when their message was stored (``screen_on_receipt``): inbox id -> outcome.
        self._prescreened: dict[str, ScreenedTurn] = {}
        self._prescreened_lock = threading.Lock()

    # Retrying a step: each step is one transaction, rolled back as a whole, so a retry repeats
    # nothing that was committed (and Rasa is not asked twice: only the failed step runs again).
    transient_backoff_s = 0.05
    transient_backoff_max_s = 2.0
    transient_deadline_s = 120.0

    # Set when the worker stops: a step waiting for the database gives up at once (TurnInterrupted).
    stopping: threading.Event

    async def _step(self, step: Callable[..., Any], *args: Any) -> Any:
        """Run ``step`` in a thread; on a transient database error, again with backoff."""
        started = time.monotonic()
        attempt = 0
        name = getattr(step, "__name__", "turn step")
        while True:
            attempt += 1
            try:
                return await asyncio.to_thread(step, *args)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                waited = time.monotonic() - started
                brief = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
                if self.stopping.is_set() or waited >= self.transient_deadline_s:
                    raise TurnInterrupted(f"{name}: database unavailable for {waited:.1f}s ({brief})") from exc
                if attempt in (1, 5) or attempt % 50 == 0:  # a few lines per outage, not one per try
                    log.warning("%s failed on a transient database error (attempt %d, %.1fs), retrying: %s",
                                name, attempt, waited, brief)
                await self._pause(min(self.transient_backoff_s * 2 ** (attempt - 1), self.transient_backoff_max_s))

    async def _pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping.is_set() and (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.1))

    async def process(self, inbox_id: str, *, last: bool = False) -> TurnResult:
        """Run one turn. ``last``: the drain has nothing after it, so (shared mode) its last step lets go
        of the lease in its own transaction (``TurnResult.let_go``) instead of one more transaction after."""
        resumed = self._unfinished.pop(inbox_id, None)
        if resumed is not None:
            # Interrupted before its replies were stored: finish with the answer Rasa already gave
            # (asking again would put the message into Rasa's conversation twice).
            screened, rasa_messages, failure = resumed
        else:
            with self._prescreened_lock:
                prescreened = self._prescreened.pop(inbox_id, None)
            fresh: ScreenedTurn = prescreened or await self._step(self._screen, inbox_id)
            if fresh.done is not None:
                return fresh.done
            screened = fresh
            failure = None
            rasa_messages = []
            if screened.ask_rasa:
                reply = await self.rasa.turn(screened.conversation_id, screened.rasa_text,
                                             metadata={"message_id": screened.message_id})
                if isinstance(reply, RasaFailure):
                    failure = f"{reply.reason}: {reply.detail}"
                else:
                    rasa_messages = reply.messages
        released: dict[str, bool] = {}
        try:
            result: TurnResult = await self._step(self._finish, inbox_id, screened, rasa_messages, failure,
                                                  released if last and self.let_go is not None else None)
        except LeaseLost:
            raise  # the holder finishes this turn; what Rasa told us is not ours to store
        except TurnInterrupted:
            self._unfinished[inbox_id] = (screened, rasa_messages, failure)
            raise
        if "more_pending" in released:  # set by the committed attempt's let_go (a retry sets it again)
            result.let_go = True
            result.more_pending = released["more_pending"]
        return result

    async def set_aside(self, inbox_id: str, error: str) -> TurnResult:
        """The turn failed for good: keep the message, mark it failed, tell the HCP (and audit it)."""
        self._unfinished.pop(inbox_id, None)
        result: TurnResult = await self._step(self._set_aside, inbox_id, error)
        return result

    def _set_aside(self, inbox_id: str, error: str) -> TurnResult:
        now = self.clock.now()
        with unit_of_work(self.session_factory) as session:
            inbox, msg, conv = self._load_turn(session, inbox_id)
            if inbox.status != InboxStatus.pending:  # finished or set aside meanwhile
                return TurnResult(msg.id, [m.id for m in conversations.replies_to(session, msg.id)])
            inbox.status = InboxStatus.failed
            inbox.error = error[:2000]
            inbox.processed_at = now
            msg.error = error[:2000]
            drafts: list[ReplyDraft] = []
            if inbox.screened_at is not None and inbox.screen is not None:
                # What the screen had to say (an adverse event's acknowledgement) still goes out.
                drafts.extend(ScreenedTurn.from_dict(conv.id, msg.id, inbox.screen).safety_replies)
            else:
                # The screening step never committed (something in it failed): the safety screen is
                # tried once more on its own, so an adverse event is not lost with the turn.
                try:
                    with session.begin_nested():
                        drafts.extend(self.safety_hook(session, conv, msg, now).replies)
                    inbox.screened_at = now
                except Exception:
                    log.exception("safety screen failed again for message %s set aside unscreened", msg.id)
            audit.record(session, action="message.set_aside", subject_type="message", subject_id=str(msg.id),
                         data={"conversation_id": conv.id, "screened": inbox.screened_at is not None,
                               "error": error.split(":", 1)[0][:80]}, at=now)
            inbox.screen = None
            drafts.append(ReplyDraft(text=copy.TURN_SET_ASIDE, buttons=[copy.TALK_TO_PERSON]))
            replies = self._queue(session, conv, msg, drafts, now)
            deliver_pending(session, conv.id, senders=self.senders, gate=self.gate, now=now)
            return TurnResult(msg.id, [m.id for m in replies], "set_aside")

    def _load_turn(self, session: Session, inbox_id: str, *,
                   fenced: bool = True) -> tuple[InboxItem, Message, Conversation]:
        """The inbox row, its message and its conversation: one query (each step starts with them).

        The conversation row is locked as it is read, before the step writes anything. Lock order:
        conversation, audit head, then the lease at commit — as storing an inbound message does
        (conversation, then audit head); otherwise a step would take the audit head first and the
        conversation at a later flush, and deadlock with a message being stored in that conversation
        (PostgreSQL; SQLite has one writer). Shared mode: the step commits only if this process still
        holds the conversation's lease (``_fence_at_commit``)."""
        row = session.execute(
            select(InboxItem, Message, Conversation)
            .join(Message, Message.id == InboxItem.message_id)
            .join(Conversation, Conversation.id == InboxItem.conversation_id)
            .where(InboxItem.id == inbox_id)
            .with_for_update(of=Conversation)
        ).one()
        inbox, msg, conv = row[0], row[1], row[2]
        if fenced:
            self._fence_at_commit(session, conv.id)
        return inbox, msg, conv

    def _fence_at_commit(self, session: Session, conversation_id: str) -> None:
        """Shared mode: the lease check is the step's last statement, just before COMMIT. A step of a
        process that lost the lease meanwhile rolls back as a whole (``LeaseLost``); the lease row is
        locked only for the commit, so the heartbeat keeps renewing it while a step waits on a lock."""
        fence = self.fence
        if fence is not None:
            event.listen(session, "before_commit", lambda s: fence(s, conversation_id))

    # -- step 1: safety first, committed on its own -------------------------------------------
    def _screen(self, inbox_id: str) -> ScreenedTurn:
        now = self.clock.now()
        with unit_of_work(self.session_factory) as session:
            inbox, msg, conv = self._load_turn(session, inbox_id)
            if inbox.status != InboxStatus.pending:
                ids = [m.id for m in conversations.replies_to(session, msg.id)]
                return ScreenedTurn(conv.id, msg.id, "", False, [], done=TurnResult(msg.id, ids))
            if inbox.screened_at is not None and inbox.screen is not None:
                # Screened before an outage or a crash, or when it was stored (``screen_on_receipt``):
                # what it found is committed; go on from there.
                inbox.attempts += 1
                return ScreenedTurn.from_dict(conv.id, msg.id, inbox.screen)
            return self._screen_loaded(session, inbox, msg, conv, now)

    def screen_on_receipt(self, session: Session, inbox: InboxItem, msg: Message, conv: Conversation,
                          now: datetime) -> ScreenedTurn | None:
        """Step 1 in the transaction that stores the message (web chat), when nothing else of its
        conversation is pending — so no turn of it is running in any process and the screen sees the
        conversation as the worker would. Saves the turn a transaction of its own; the outcome is stored
        with the inbox row exactly as step 1 stores it. The caller hands the result to ``prescreened``
        once its transaction has committed. None: not screened here (the worker's step 1 does it).

        ``conv`` is locked in this transaction already (``FOR UPDATE``). An error raised here fails
        the caller's transaction; it stores the message again without screening it."""
        ready = getattr(self.safety_hook, "ready", None)
        if ready is not None and not ready():
            return None  # the screen is still loading: do not wait for it holding the conversation
        others = session.execute(
            select(InboxItem.id).where(InboxItem.conversation_id == conv.id,
                                       InboxItem.status == InboxStatus.pending,
                                       InboxItem.id != inbox.id).limit(1)).first()
        if others is not None:
            return None
        screened = self._screen_loaded(session, inbox, msg, conv, now, taken_up=False)
        # Shared mode: nothing is pending, so no process runs a turn of this conversation; its lease is
        # free, expired or ours — or held by a process about to let go (then the drain takes it later).
        screened.leased = self.claim is not None and self.claim(session, conv.id)
        return screened

    def prescreened(self, inbox_id: str, screened: ScreenedTurn) -> bool:
        """A turn screened when its message was stored (committed): step 1 is done for it. Kept for this
        process's worker only when no other process can run the turn first — one process, or the storing
        transaction took the lease — else another process might finish it and this one, trusting what it
        kept, would ask Rasa again; the database has the outcome either way. Returns whether kept."""
        if self.claim is not None and not screened.leased:
            return False
        with self._prescreened_lock:  # stored from request threads, taken by the worker's loop
            self._prescreened[inbox_id] = screened
            while len(self._prescreened) > _PRESCREENED_KEPT:  # turns set aside or interrupted meanwhile
                self._prescreened.pop(next(iter(self._prescreened)))
        return True

    def _screen_loaded(self, session: Session, inbox: InboxItem, msg: Message, conv: Conversation,
                       now: datetime, *, taken_up: bool = True) -> ScreenedTurn:
        outcome = self.safety_hook(session, conv, msg, now)
        if conv.state == ConversationState.closed:
            conv.state = ConversationState.bot
            conv.failed_turns = 0
            audit.record(session, action="conversation.reopened", subject_type="conversation",
                         subject_id=conv.id, actor_type="hcp", at=now)
        with_human = conv.state in (ConversationState.human, ConversationState.queued)
        # Waiting for a person who has not taken the conversation yet: the bot keeps answering.
        queued = conv.state == ConversationState.queued
        # The HCP's callback / email choice is answered by the api in every state (it must work
        # when Rasa is down).
        api_replies = None if outcome.stop_processing else handoffs.answer_contact_choice(
            session, conv, msg, now)
        if api_replies is None and queued and not outcome.stop_processing and waiting.wants_to_cancel(msg):
            api_replies = waiting.cancel(session, conv, msg, now)
        if api_replies is None and with_human and not outcome.stop_processing \
                and (msg.payload or "").startswith("/give_score"):
            # A CSAT tap (a request closed while a person is in the chat) is recorded, not lost.
            api_replies = handoffs.answer_score_without_rasa(session, conv, msg, now)
        # WhatsApp verification intake, only for a message the screen did not act on (an
        # adverse event, opt-out/in, HELP or off-label question always comes first).
        screen_acted = bool(outcome.replies) or getattr(outcome, "adverse_event_id", None) is not None
        step = None
        if api_replies is None and not outcome.stop_processing and not with_human and not screen_acted:
            step = intake.on_message(session, conv, msg, now)
            if step.consumed:
                api_replies = step.replies
        ask_rasa = not outcome.stop_processing and (queued or not with_human) and api_replies is None
        if with_human and not outcome.stop_processing:
            audit.record(session, action="message.relayed", subject_type="message",
                         subject_id=str(msg.id), data={"conversation_id": conv.id,
                                                       "state": conv.state}, at=now)
        # The text Rasa sees: a clicked quick reply sends its payload (e.g. "/request_human"); typed
        # text with misspelt product names corrected (the stored message stays as written).
        rasa_text = msg.payload or spelling.correct(msg.body)
        safety_replies = list(outcome.replies)
        ae_found = getattr(outcome, "adverse_event_id", None) is not None and not msg.payload
        ae_question = None
        if ae_found and ask_rasa:
            ae_question = ae_turn.embedded_question(rasa_text)
            rasa_text = ae_question or rasa_text
            if not safety_replies:  # a detail for an open report (the patient's age, the product …)
                safety_replies.append(ReplyDraft(text=ae_turn.FOLLOW_UP_THANKS))
        if not msg.payload and conv.failed_turns >= 1 and routing.asks_for_person(msg.body):
            # A plain request for a person right after a turn we got wrong: hand over at once,
            # whatever the NLU (or the screen) made of it; action_request_handoff reads the team
            # from the stored text.
            rasa_text = "/request_human"
        elif not msg.payload and ask_rasa and not ae_found and getattr(outcome, "asked", None) is None:
            if routing.asks_to_be_put_through(msg.body):
                # "put me through to medical information": a person from that team (the action reads
                # the team from the stored text), not a written inquiry or a miss.
                rasa_text = "/request_human"
            elif gibberish.is_gibberish(msg.body):
                rasa_text = gibberish.FALLBACK_TEXT  # no known word: not understood, whatever the NLU says
        screened = ScreenedTurn(conv.id, msg.id, rasa_text, ask_rasa, [*safety_replies, *(api_replies or [])],
                                intake=step if step is not None and not step.consumed else None,
                                ae_turn=ae_found and ask_rasa,
                                ae_question=ae_question is not None,
                                handoff=bool(getattr(outcome, "handoff_requested", False)),
                                waiting=queued and ask_rasa, counted=taken_up)
        # Counted with the outcome (one UPDATE of the row; a failed attempt rolls back either way).
        if taken_up:
            inbox.attempts += 1
        inbox.screened_at = now
        inbox.screen = screened.to_dict()
        return screened

    # -- step 3/4: replies, outbox, delivery ---------------------------------------------------
    def _finish(self, inbox_id: str, screened: ScreenedTurn, rasa_messages: list[dict[str, Any]],
                failure: str | None, released: dict[str, bool] | None = None) -> TurnResult:
        now = self.clock.now()
        let_go = self.let_go if released is not None else None
        with unit_of_work(self.session_factory) as session:
            inbox, msg, conv = self._load_turn(session, inbox_id, fenced=let_go is None)
            if inbox.status != InboxStatus.pending:
                # A commit whose acknowledgement was lost (the connection dropped at COMMIT) is
                # retried as a whole: it already happened, so it is not done twice (and writes nothing:
                # no fence; a lease let go of then stays let go of, one kept is let go of by the drain).
                return TurnResult(msg.id, [m.id for m in conversations.replies_to(session, msg.id)], failure)
            if let_go is not None and released is not None:
                # The fence of this last step: still ours, and let go of as it commits (the pending check
                # comes after, in a later statement, like ``LeaseStore.release_and_check``).
                released.clear()
                event.listen(session, "before_commit",
                             lambda s: released.__setitem__("more_pending", let_go(s, conv.id, inbox_id)))
            drafts = list(screened.safety_replies)
            if screened.ae_turn:
                drafts = ae_turn.one_acknowledgement(drafts)
                if failure is not None:
                    self._record_rasa_failure(session, conv, msg, now, failure)
                    if screened.ae_question:
                        drafts.append(ReplyDraft(text=ae_turn.QUESTION_WHILE_RASA_DOWN, buttons=[copy.TALK_TO_PERSON]))
                else:
                    drafts.extend(drafts_from_rasa(ae_turn.substantive(rasa_messages,
                                                                        asked=screened.ae_question))[0])
                # Reporting a problem is not a failed turn, whatever Rasa made of it.
                conv.failed_turns = 0
            elif failure is not None and screened.waiting and waiting.queued_handoff(session, conv) is not None:
                # Rasa is down while the HCP waits for a person: the request stands, say so.
                self._record_rasa_failure(session, conv, msg, now, failure)
            elif failure is not None:
                drafts.extend(self._fallback(session, conv, msg, now, failure, handoff=screened.handoff))
            elif screened.ask_rasa:
                rasa_drafts, turn_failed = drafts_from_rasa(rasa_messages)
                drafts.extend(rasa_drafts)
                if not turn_failed:
                    conv.failed_turns = 0
            if screened.waiting and (queued := waiting.queued_handoff(session, conv)) is not None:
                # Every message while waiting is acknowledged: by the bot's answer, and with the
                # request's status when the bot had nothing to say (on WhatsApp, which has no status
                # banner, always, in one short line).
                if not drafts:
                    drafts.append(waiting.still_waiting(queued, self.hours))
                elif conv.channel == "whatsapp":
                    drafts.append(waiting.still_waiting(queued, self.hours, short=True))
            if screened.intake is not None:
                # A Rasa form asking for its next slot marks its question with ``asks``.
                form_asking = any(isinstance(m.get("custom"), dict) and m["custom"].get("asks")
                                  for m in rasa_messages)
                started = intake.after_rasa(session, conv, msg, screened.intake, now, form_asking=form_asking)
                if started:
                    drafts = intake.without_verify_hint(drafts)  # the intake's own words say it, and more
                drafts.extend(started)
            replies = self._queue(session, conv, msg, drafts, now)
            deliver_pending(session, conv.id, senders=self.senders, gate=self.gate, now=now)
            msg.status = MessageStatus.processed
            msg.processed_at = now
            if failure is not None:
                msg.error = f"rasa {failure}"
            if not screened.counted:  # screened on receipt: this is the first time a process takes it up
                inbox.attempts += 1
            inbox.status = InboxStatus.done
            inbox.processed_at = now
            inbox.screen = None  # only a pending turn needs it; it holds the message text
            return TurnResult(msg.id, [m.id for m in replies], failure, page=self._page(session, conv, replies))

    @staticmethod
    def _record_rasa_failure(session: Session, conv: Conversation, msg: Message, now: datetime,
                             failure: str) -> None:
        audit.record(session, action="rasa.failed", subject_type="message", subject_id=str(msg.id),
                     data={"conversation_id": conv.id, "reason": failure}, at=now)
        log.warning("rasa failed for conversation %s: %s", conv.id, failure)

    def _fallback(self, session: Session, conv: Conversation, msg: Message, now: datetime,
                  failure: str, *, handoff: bool = False) -> list[ReplyDraft]:
        self._record_rasa_failure(session, conv, msg, now, failure)
        # Asking for a person must work without Rasa: the button, or the words the screen read.
        if (msg.payload == copy.TALK_TO_PERSON.payload or handoff) and self.handoff_hook is not None:
            return [self.handoff_hook(session, conv, msg, now, "rasa_unavailable")]
        # A CSAT/NPS answer is recorded even when Rasa is down.
        scored = handoffs.answer_score_without_rasa(session, conv, msg, now)
        if scored is not None:
            return scored
        return [ReplyDraft(text=copy.RASA_FALLBACK, buttons=[copy.TALK_TO_PERSON])]

    def _page(self, session: Session, conv: Conversation, replies: list[Message]) -> TurnPage | None:
        """The web chat page's view at the end of the turn (see ``TurnResult.page``)."""
        if conv.channel != Channel.webchat:
            return None
        session.flush()  # the replies' ids and delivery status are final
        # An open request for a person (queued or claimed) always comes with the conversation in that
        # state (api/handoffs/service.py): in the bot's hands there is none to look up.
        with_request = conv.state in (ConversationState.queued, ConversationState.human)
        return TurnPage(tuple(replies), waiting.waiting_for(session, conv, self.hours) if with_request else None)

    def _queue(self, session: Session, conv: Conversation, msg: Message, drafts: list[ReplyDraft],
               now: datetime) -> list[Message]:
        out: list[Message] = []
        # On WhatsApp options are numbers the HCP types ("Reply 1 for …"), and a typed number answers
        # the newest menu: only the turn's last message with options keeps them, so two bubbles never
        # offer two different "1"s. (The web chat shows every button where it belongs.)
        last_menu = max((i for i, d in enumerate(drafts) if d.buttons), default=-1)
        for i, draft in enumerate(drafts):
            at = now + timedelta(microseconds=i)  # keeps replies ordered on coarse clocks
            keep = conv.channel != "whatsapp" or i == last_menu
            buttons = [b.as_dict() for b in draft.buttons] if keep else []
            if draft.content_ref is not None:
                ref = draft.content_ref
                try:
                    sendable = render(session, conv, ref.content_id, ref.version,
                                      default_market=self.default_market, today=now.date())
                except ContentGated as exc:
                    audit.record(session, action="content.gated_at_send", subject_type="conversation",
                                 subject_id=conv.id, data={"content_id": ref.content_id,
                                                           "version": ref.version, "reason": exc.message},
                                 at=at)
                    out.append(conversations.add_outbound(
                        session, conv, text=copy.CONTENT_NO_LONGER_AVAILABLE, now=at,
                        buttons=[copy.TALK_TO_PERSON.as_dict()], in_reply_to=msg.id))
                    continue
                out.append(conversations.add_outbound(
                    session, conv, text=sendable.text(), now=at, buttons=buttons,
                    content_id=sendable.content_id, content_version=sendable.version,
                    approval_code=sendable.approval_code, in_reply_to=msg.id))
            else:
                out.append(conversations.add_outbound(
                    session, conv, text=draft.text, now=at, sender_type=draft.sender_type,
                    buttons=buttons, in_reply_to=msg.id))
        return out
