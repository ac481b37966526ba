"""The outbox dispatcher for push channels (WhatsApp through Twilio).

The turn that produced a reply committed its outbox row; this task delivers it later, outside
any conversation transaction. For each conversation the oldest undelivered row goes first, and
row N+1 waits until row N is sent, dead, cancelled or held.

One row, one delivery:
1. *Claim* (one transaction): re-check everything that may have changed since the row was
   queued — consent (a STOP persisted a moment ago wins, even one not ingested yet), the
   approved-content gate, the 24-hour window / template, the opt-in of a business-initiated
   purpose — then move the row to
   ``sending`` with a lease. Only the holder of the lease calls Twilio.
2. *Send* each part (long replies are several WhatsApp messages); every accepted part is
   committed at once with its Twilio sid, so a retry resumes after the last accepted part.
3. A failure that may have reached Twilio (timeout, 5xx) marks the send *uncertain*: the next
   attempt first looks the message up at Twilio and adopts it instead of sending it twice.
   429/5xx/timeouts are retried with exponential backoff (Retry-After honoured); after
   ``max_attempts`` — or at once on a permanent 4xx — the row is ``dead`` (the dead-letter
   queue the consoles list). A process that dies mid-send leaves the row ``sending``; when the
   lease expires any dispatcher takes it over, uncertain.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.audit import service as audit
from api.channels.whatsapp import ingest
from api.channels.whatsapp import service as wa
from api.channels.whatsapp.client import TwilioClient, TwilioError
from api.channels.whatsapp.models import WhatsappPart, WhatsappSend
from api.channels.whatsapp.text import numbered_options, speaker_line, split_body, with_options
from api.clock import Clock
from api.conversations.models import Channel, Conversation, Message, MessageStatus, OutboxItem, OutboxStatus
from api.db import unit_of_work
from api.errors import ContentGated
from api.outbox import SendGate
from api.polling_loop import PollingLoop
from api.safety import service as safety
from feedback import fatigue

log = logging.getLogger("concierge.outbox")

SENDING = "sending"  # claimed by a dispatcher; the lease is ``next_attempt_at``
OPEN = (OutboxStatus.pending, SENDING)


@dataclass(frozen=True)
class DispatchPolicy:
    max_attempts: int = 8
    retry_base: float = 1.0  # seconds; doubled per attempt
    retry_max: float = 300.0
    lease: float = 60.0  # seconds a claimed row is ours before another dispatcher may take it over
    poll_interval: float = 0.5
    concurrency: int = 16


@dataclass
class Plan:
    outbox_id: str
    message_id: int
    to: str
    parts: list[str]  # empty for a template send
    template_sid: str | None
    variables: dict[str, str] | None
    start_part: int
    uncertain_since: datetime | None
    known_sids: set[str]
    attempt_at: datetime


class OutboxDispatcher(PollingLoop):
    task_name = "outbox-dispatcher"

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        client: TwilioClient,
        clock: Clock,
        gate: SendGate,
        *,
        from_number: str,
        templates: Mapping[str, str],
        status_callback_url: str | None = None,
        policy: DispatchPolicy | None = None,
        rng: random.Random | None = None,
        fatigue_policy: fatigue.FatiguePolicy | None = None,
    ) -> None:
        super().__init__()
        self.session_factory = session_factory
        self.client = client
        self.clock = clock
        self.gate = gate
        self.from_number = from_number
        self.templates = dict(templates)
        self.status_callback_url = status_callback_url
        self.policy = policy or DispatchPolicy()
        self.fatigue = fatigue_policy  # None: no frequency cap / quiet hours (the app passes its settings')
        self._rng = rng or random.Random()
        self._busy: set[str] = set()

    # -- lifecycle (start, kick: PollingLoop) ---------------------------------------------------
    async def close(self) -> None:
        await super().close()
        await self.client.aclose()

    async def _run(self) -> None:
        while not self._closing:
            try:
                await self.run_once()
            except Exception:
                log.exception("outbox dispatch round failed")
            await self._wait_for_kick(self.policy.poll_interval)

    async def run_once(self) -> int:
        """Deliver what is due now, every conversation concurrently. Returns rows acted on."""
        due = await asyncio.to_thread(self._due_conversations)
        sem = asyncio.Semaphore(self.policy.concurrency)

        async def one(cid: str) -> int:
            async with sem:
                try:
                    return await self._deliver_conversation(cid)
                except Exception:
                    # One conversation's trouble (its row stays claimed until the lease expires,
                    # then is retried as uncertain) must not hold up the others.
                    log.exception("outbox delivery failed for conversation %s", cid)
                    return 0

        todo = [cid for cid in due if cid not in self._busy]
        results = await asyncio.gather(*(one(cid) for cid in todo))
        return sum(results)

    async def drain(self, timeout: float = 30.0, conversation_ids: set[str] | None = None) -> None:
        """Run until no WhatsApp row (of these conversations) is pending or in flight."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await asyncio.to_thread(self._open_count, conversation_ids):
            if loop.time() > deadline:
                raise TimeoutError("outbox did not drain")
            if not await self.run_once():
                await asyncio.sleep(0.01)

    # -- selection ------------------------------------------------------------------------------
    def _open_count(self, conversation_ids: set[str] | None = None) -> int:
        stmt = select(OutboxItem.id).where(OutboxItem.channel == Channel.whatsapp, OutboxItem.status.in_(OPEN))
        if conversation_ids is not None:
            stmt = stmt.where(OutboxItem.conversation_id.in_(conversation_ids))
        with self.session_factory() as session:
            return len(session.execute(stmt).all())

    def _due_conversations(self) -> list[str]:
        now = self.clock.now()
        with self.session_factory() as session:
            deferred_due = fatigue.any_due(session, now=now, channel=Channel.whatsapp)
        if deferred_due:  # a write transaction only when there is something to release
            with unit_of_work(self.session_factory) as session:
                fatigue.release_due(session, now=now, channel=Channel.whatsapp)
        with self.session_factory() as session:
            rows = session.execute(
                select(OutboxItem.conversation_id, OutboxItem.next_attempt_at)
                .where(OutboxItem.channel == Channel.whatsapp, OutboxItem.status.in_(OPEN))
                .order_by(OutboxItem.conversation_id, OutboxItem.message_id)
            ).all()
        due: list[str] = []
        seen: set[str] = set()
        for cid, next_at in rows:
            if cid in seen:
                continue  # only the head of each conversation counts
            seen.add(cid)
            if next_at is None or next_at <= now:
                due.append(cid)
        return due

    async def _deliver_conversation(self, conversation_id: str) -> int:
        self._busy.add(conversation_id)
        acted = 0
        try:
            while not self._closing:
                plan, progressed = await asyncio.to_thread(self._claim_head, conversation_id)
                if plan is None:
                    if not progressed:
                        return acted
                    acted += 1
                    continue
                acted += 1
                sent, more = await self._send(plan)
                if not sent or not more:
                    return acted  # a retry is scheduled, or nothing else is open here
            return acted
        finally:
            self._busy.discard(conversation_id)

    # -- step 1: claim --------------------------------------------------------------------------
    def _claim_head(self, conversation_id: str) -> tuple[Plan | None, bool]:
        """(plan to send, whether a row changed state). Runs in one transaction."""
        now = self.clock.now()
        with unit_of_work(self.session_factory) as session:
            stmt = (select(OutboxItem)
                    .where(OutboxItem.conversation_id == conversation_id,
                           OutboxItem.channel == Channel.whatsapp, OutboxItem.status.in_(OPEN))
                    .order_by(OutboxItem.message_id).limit(1))
            if session.get_bind().dialect.name != "sqlite":
                stmt = stmt.with_for_update()
            item = session.execute(stmt).scalar_one_or_none()
            if item is None or (item.next_attempt_at is not None and item.next_attempt_at > now):
                return None, False
            msg = session.get(Message, item.message_id)
            conv = session.get(Conversation, item.conversation_id)
            assert msg is not None and conv is not None
            send = session.get(WhatsappSend, msg.id)
            if send is None:
                send = WhatsappSend(message_id=msg.id, conversation_id=conv.id, parts_total=0, parts_sent=0,
                                    created_at=now)
                session.add(send)
            if item.status == SENDING and send.uncertain_since is None:
                # A dispatcher died holding this row: it may or may not have reached Twilio.
                send.uncertain_since = (item.next_attempt_at or now) - timedelta(seconds=self.policy.lease)
            refusal = self._refusal(session, item, msg, conv, send, now)
            if refusal is not None:
                return None, True
            if send.parts_total == 0:
                options = numbered_options(msg.buttons)
                send.options = options or None
                parts = [] if send.template_sid else split_body(with_options(speaker_line(msg) + msg.body, options))
                send.parts_total = max(1, len(parts))
            else:
                parts = [] if send.template_sid else split_body(
                    with_options(speaker_line(msg) + msg.body, send.options or []))
            item.status = SENDING
            item.attempts += 1
            item.next_attempt_at = now + timedelta(seconds=self.policy.lease)
            known = set(session.execute(
                select(WhatsappPart.sid).where(WhatsappPart.message_id == msg.id)).scalars())
            session.flush()
            return Plan(
                outbox_id=item.id, message_id=msg.id, to=conv.address or "", parts=parts,
                template_sid=send.template_sid, variables=send.content_variables, start_part=send.parts_sent,
                uncertain_since=send.uncertain_since, known_sids=known, attempt_at=now,
            ), True

    def _refusal(self, session: Session, item: OutboxItem, msg: Message, conv: Conversation,
                 send: WhatsappSend, now: datetime) -> str | None:
        """Why this row must not go out now (and record the decision), or None to send it."""
        # Consent first, on every attempt (and between the parts of a long message).
        consent_purpose = wa.PURPOSES.get(send.purpose or "", "service")
        if safety.is_conversation_opted_out(session, conv, "service") or \
                safety.is_conversation_opted_out(session, conv, consent_purpose) or \
                ingest.pending_stop(session, conv.address or ""):
            stop_id = wa.stop_message_id(session, conv)
            confirmation = (stop_id is not None and msg.in_reply_to == stop_id
                            and msg.body == safety.OPT_OUT_TEXT)
            if not confirmation:
                self._finish(session, item, msg, OutboxStatus.cancelled, MessageStatus.failed,
                             "not sent: the HCP opted out", "whatsapp.suppressed_opted_out", now)
                return "opted out"
        if send.parts_sent == 0:
            if send.purpose is not None and not wa.has_opt_in(session, conv, consent_purpose):
                send.held_reason = f"no recorded opt-in for {consent_purpose} messages"
                self._hold(session, item, msg, conv, send, now)
                return "no opt-in"
            if msg.content_id is not None:
                try:
                    self.gate(session, msg, conv, now.date())
                except ContentGated as exc:
                    self._finish(session, item, msg, OutboxStatus.cancelled, MessageStatus.failed,
                                 f"content gated at send: {exc.message}", "content.gated_at_send", now,
                                 {"content_id": msg.content_id, "version": msg.content_version})
                    return "gated"
            # Business-initiated (a purpose): the HCP's frequency cap and quiet hours. Deferred, not dropped.
            decision = fatigue.decide(session, conv, purpose=send.purpose, now=now, policy=self.fatigue) \
                if self.fatigue is not None else fatigue.Decision(True)
            if not decision.allowed:
                fatigue.defer(session, item, decision=decision, purpose=send.purpose, now=now)
                return "deferred"
            form = wa.send_form(conv, purpose=send.purpose, templates=self.templates, now=now)
            if form.template_sid:
                send.template_sid = form.template_sid
            elif form.held_reason:
                send.held_reason = form.held_reason
                self._hold(session, item, msg, conv, send, now)
                return "outside window"
        return None

    def _hold(self, session: Session, item: OutboxItem, msg: Message, conv: Conversation, send: WhatsappSend,
              now: datetime) -> None:
        owner = msg.sender_id if msg.sender_type == "staff" else conv.assigned_staff_id
        self._finish(session, item, msg, OutboxStatus.held, MessageStatus.held, send.held_reason or "held",
                     "whatsapp.send_held", now,
                     {"purpose": send.purpose, "owner": owner, "reason": send.held_reason,
                      "last_inbound_at": conv.last_inbound_at})

    def _finish(self, session: Session, item: OutboxItem, msg: Message, row_status: str, msg_status: str,
                reason: str, action: str, now: datetime, extra: dict[str, object] | None = None) -> None:
        item.status = row_status
        item.last_error = reason
        item.next_attempt_at = None
        msg.status = msg_status
        msg.error = reason
        session.flush()
        audit.record(session, action=action, subject_type="message", subject_id=str(msg.id),
                     data={"conversation_id": item.conversation_id, "channel": item.channel, "reason": reason,
                           **(extra or {})}, at=now)

    # -- step 2: send -----------------------------------------------------------------------------
    async def _send(self, plan: Plan) -> tuple[bool, bool]:
        """Send the remaining parts. (done, more): done is False when a retry is scheduled; more
        is whether this conversation may have another open row (worth claiming now)."""
        total = len(plan.parts) or 1
        sid: str | None = None
        status = "queued"
        for index in range(plan.start_part, total):
            body = plan.parts[index] if plan.parts else None
            if index > plan.start_part and not await asyncio.to_thread(self._may_continue, plan):
                return True, True
            try:
                sid = None
                if plan.uncertain_since is not None:
                    sid = await self.client.find_sent(to=plan.to, from_=self.from_number, since=plan.uncertain_since,
                                                      body=body, exclude=plan.known_sids)
                    if sid is not None:
                        log.info("adopting %s for message %s (sent before an uncertain failure)", sid,
                                 plan.message_id)
                status = "queued"
                if sid is None:
                    sent = await self.client.create_message(
                        to=plan.to, from_=self.from_number, body=body, content_sid=plan.template_sid,
                        content_variables=plan.variables, status_callback=self.status_callback_url)
                    sid, status = sent.sid, sent.status
            except TwilioError as exc:
                await asyncio.to_thread(self._failed, plan, exc)
                return False, True
            plan.known_sids.add(sid)
            plan.uncertain_since = None
            if index < total - 1:
                await asyncio.to_thread(self._part_sent, plan, index, sid, status)
        # The last part and the row's completion commit together (one transaction fewer per message).
        more = await asyncio.to_thread(self._completed, plan, total - 1, sid, status)
        return True, more

    def _may_continue(self, plan: Plan) -> bool:
        """Between the parts of a long message: a STOP persisted meanwhile cancels the rest."""
        now = self.clock.now()
        with unit_of_work(self.session_factory) as session:
            item = session.get(OutboxItem, plan.outbox_id)
            msg = session.get(Message, plan.message_id)
            assert item is not None and msg is not None
            conv = session.get(Conversation, item.conversation_id)
            assert conv is not None
            if not safety.is_conversation_opted_out(session, conv, "service") and \
                    not ingest.pending_stop(session, conv.address or ""):
                return True
            self._finish(session, item, msg, OutboxStatus.cancelled, MessageStatus.failed,
                         "rest not sent: the HCP opted out", "whatsapp.suppressed_opted_out", now)
            return False

    def _part_sent(self, plan: Plan, index: int, sid: str, status: str) -> None:
        now = self.clock.now()
        with unit_of_work(self.session_factory) as session:
            self._record_part(session, plan, index, sid, status, now)

    def _record_part(self, session: Session, plan: Plan, index: int, sid: str, status: str,
                     now: datetime) -> None:
        send = session.get(WhatsappSend, plan.message_id)
        msg = session.get(Message, plan.message_id)
        assert send is not None and msg is not None
        if index < send.parts_sent:
            return  # already recorded (an adopted sid after an uncertain failure is recorded once)
        session.add(WhatsappPart(sid=sid, message_id=plan.message_id, part_index=index, status=status,
                                 created_at=now))
        send.parts_sent = index + 1
        send.uncertain_since = None
        if index == 0:
            msg.channel_message_id = sid
        session.flush()

    def _completed(self, plan: Plan, index: int, sid: str | None, status: str) -> bool:
        """Record the last part (``sid`` None: every part was recorded before) and mark the row
        sent; True if the conversation has another open row."""
        now = self.clock.now()
        with unit_of_work(self.session_factory) as session:
            if sid is not None:
                self._record_part(session, plan, index, sid, status, now)
            item = session.get(OutboxItem, plan.outbox_id)
            msg = session.get(Message, plan.message_id)
            send = session.get(WhatsappSend, plan.message_id)
            assert item is not None and msg is not None and send is not None
            item.status = OutboxStatus.sent
            item.sent_at = now
            item.next_attempt_at = None
            item.last_error = None
            if msg.status in (MessageStatus.queued, MessageStatus.held):
                msg.status = MessageStatus.sent
            audit.record(session, action="message.sent", subject_type="message", subject_id=str(msg.id),
                         data={"channel": item.channel, "sid": msg.channel_message_id, "parts": send.parts_sent,
                               "template_sid": send.template_sid, "attempts": item.attempts,
                               "content_id": msg.content_id, "content_version": msg.content_version}, at=now)
            more = session.execute(
                select(OutboxItem.id).where(OutboxItem.conversation_id == item.conversation_id,
                                            OutboxItem.channel == Channel.whatsapp, OutboxItem.status.in_(OPEN))
                .limit(1)
            ).first()
            return more is not None

    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        delay = min(self.policy.retry_max, self.policy.retry_base * (2 ** max(0, attempts - 1)))
        delay *= 0.5 + self._rng.random() / 2  # jitter: retries of many rows do not arrive together
        return float(max(delay, retry_after or 0.0))

    def _failed(self, plan: Plan, exc: TwilioError) -> None:
        now = self.clock.now()
        with unit_of_work(self.session_factory) as session:
            item = session.get(OutboxItem, plan.outbox_id)
            msg = session.get(Message, plan.message_id)
            send = session.get(WhatsappSend, plan.message_id)
            assert item is not None and msg is not None and send is not None
            if exc.uncertain and send.uncertain_since is None:
                send.uncertain_since = plan.attempt_at
            send.error_code = exc.twilio_code or (str(exc.http_status) if exc.http_status else None)
            item.last_error = exc.message[:2000]
            if exc.retryable and item.attempts < self.policy.max_attempts:
                item.status = OutboxStatus.pending
                item.next_attempt_at = now + timedelta(seconds=self._backoff(item.attempts, exc.retry_after))
                audit.record(session, action="outbox.retry_scheduled", subject_type="message",
                             subject_id=str(msg.id),
                             data={"attempts": item.attempts, "error": exc.message[:300],
                                   "next_attempt_at": item.next_attempt_at}, at=now)
                return
            item.status = OutboxStatus.dead
            item.next_attempt_at = None
            msg.status = MessageStatus.failed
            msg.error = f"undeliverable: {exc.message[:500]}"
            audit.record(session, action="outbox.dead", subject_type="message", subject_id=str(msg.id),
                         data={"attempts": item.attempts, "error": exc.message[:300],
                               "error_code": send.error_code, "retryable": exc.retryable}, at=now)
            log.warning("whatsapp message %s is dead after %d attempts: %s", msg.id, item.attempts, exc.message)
