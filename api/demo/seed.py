"""Demo data for the CX dashboard: fictional HCPs and ninety days of their conversations and feedback.

``concierge demo seed --hcps 500 --days 90 [--seed N]``. Everything is generated from one
``random.Random(seed)`` and the end date, so a seed and an end date give the same rows (ids
included). HCPs carry ``licence_id = DEMO-<seed>-<n>``: a seed already used is refused, a new
seed adds a batch. Rows are written with bulk inserts, HCP chunk by chunk.

What is generated, per HCP (fictional name, specialty, country, territory):
conversations on web chat and WhatsApp (more WhatsApp in Europe, fewer at weekends), questions
answered from the real demo library (``answer`` rows with the item's current version, the
outbound message carrying the item id, version and approval code) or escalated (questions the
library does not cover), answer ratings (helpfulness varies by item: a few items are "out of
date"), handoffs to a rep / MSL / Medical Information with claim times (longer out of hours),
service requests with resolution times against their SLA, CSAT after resolved requests and
closed handoffs, NPS at most once per 90 days, and comments on the themes the business acts on
(wants a human, too many messages, content out of date, access problem) and others, a few with
(fictional) phone numbers, emails and names in them, as HCPs really write.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from api.audit import service as audit
from api.conversations.models import Conversation, Message
from api.handoffs.models import Handoff
from api.hcps.models import Hcp
from api.requests.models import ServiceRequest
from api.requests.service import SLA, TEAM
from feedback import rollups
from feedback.models import AnswerRating, FeedbackComment, SurveyResponse
from knowledge.models import Answer, ContentVersion

LICENCE_PREFIX = "DEMO"
CHUNK_HCPS = 250
TABLES = ("hcp", "conversation", "message", "answer", "answer_rating", "handoff", "service_request",
          "survey_response", "feedback_comment")

FIRST = ("Amelia", "Oliver", "Sofia", "Lukas", "Hannah", "James", "Priya", "Mateo", "Chloe", "Felix", "Aisha",
         "Noah", "Lena", "Daniel", "Maya", "Tobias", "Grace", "Samuel", "Elif", "Jonas", "Nadia", "Henry",
         "Clara", "Omar", "Ines", "Leon", "Zara", "Arjun", "Freya", "Marco", "Yuki", "Ruth", "Kwame", "Helena",
         "Sebastian", "Leila", "Thomas", "Mei", "David", "Anouk")
LAST = ("Ashworth", "Brandt", "Castellano", "Delacroix", "Eberhardt", "Fairbairn", "Gallagher", "Hartmann",
        "Iyer", "Jablonski", "Kowalczyk", "Lindqvist", "Moreau", "Nakamura", "Okonkwo", "Pellegrini", "Quinlan",
        "Rasmussen", "Schreiber", "Thornbury", "Underwood", "Vasquez", "Whitcombe", "Yilmaz", "Zimmermann",
        "Abernethy", "Bergström", "Cavendish", "Dunmore", "Eastleigh", "Fitzgerald", "Grünewald", "Holloway",
        "Kaminski", "Lockhart", "Marchetti", "Novak", "Oyelaran", "Prescott", "Reinholt")
COUNTRIES = (("GB", 0.4, ("London", "South East", "Midlands", "North West", "Scotland")),
             ("DE", 0.3, ("Bayern", "Berlin", "Nordrhein-Westfalen", "Hessen")),
             ("US", 0.3, ("Northeast", "Southeast", "Midwest", "West")))
UTC_OFFSET = {"GB": 0, "DE": 1, "US": -5}
WHATSAPP_SHARE = {"GB": 0.6, "DE": 0.65, "US": 0.3}
# specialty → (weight, product affinity)
SPECIALTIES = {
    "cardiology": (0.2, {"cardiovex": 0.85, "glucorel": 0.1, "respizan": 0.05}),
    "general practice": (0.3, {"cardiovex": 0.4, "glucorel": 0.4, "respizan": 0.2}),
    "endocrinology": (0.15, {"glucorel": 0.85, "cardiovex": 0.15}),
    "respiratory medicine": (0.15, {"respizan": 0.9, "cardiovex": 0.1}),
    "internal medicine": (0.1, {"cardiovex": 0.35, "glucorel": 0.35, "respizan": 0.3}),
    "pharmacy": (0.1, {"cardiovex": 0.34, "glucorel": 0.33, "respizan": 0.33}),
}
# Questions the library does not answer, per product: what escalations look like.
UNANSWERED = {
    "cardiovex": ("Can {p} be crushed for a patient with a feeding tube?",
                  "Is there data on {p} in patients over 85?",
                  "What is the interaction between {p} and colchicine?",
                  "Does {p} come in a 5 mg tablet?",
                  "Is {p} covered by the new formulary in my region?",
                  "How long can {p} be stored after opening the bottle?"),
    "respizan": ("Can {p} be self-administered at home from the first dose?",
                 "Is there data on {p} in pregnancy?",
                 "How long does a {p} pen keep outside the fridge?",
                 "Can {p} be given with a live vaccine?",
                 "What should I do if a patient misses a {p} dose by two weeks?"),
    "glucorel": ("Can {p} be used with insulin glargine twice daily?",
                 "Is there data on {p} in patients on dialysis?",
                 "How should {p} be stopped before surgery?",
                 "Is {p} available in a multi-dose pen?",
                 "Does {p} need dose adjustment in liver impairment?"),
}
ESCALATION_REPLY = ("I can't answer that from our approved information. I can pass your question to our "
                    "Medical Information team, or connect you with a person.")
GREETINGS = ("Hello", "Hi", "Good morning", "Hi there", "Hello, quick question")
# Comment themes: (theme, category, weight, templates). {p} product, {pii} a personal detail or "".
COMMENTS: tuple[tuple[str, str, float, tuple[str, ...]], ...] = (
    ("wants a human", "service", 0.18, (
        "I just want to talk to a real person, not a bot.",
        "Please let me speak to someone from your team{pii}.",
        "The bot keeps going round in circles, I need a human.",
        "Can a person call me back about {p}{pii}?",
        "Too automated. I would rather speak to my rep directly.")),
    ("too many messages", "frequency", 0.16, (
        "You are sending me too many messages.",
        "Too many WhatsApp messages this week, please reduce.",
        "Stop sending me updates every day, once a month is enough.",
        "I get far too many reminders from you.",
        "Please message me less often{pii}.")),
    ("content out of date", "content", 0.16, (
        "The {p} information looks out of date.",
        "That dosing leaflet for {p} is old, the guideline changed last year.",
        "Your answer did not mention the new {p} indication.",
        "The {p} storage advice seems outdated.",
        "Information about {p} was not current.")),
    ("access problem", "channel", 0.14, (
        "I could not log in to the web chat from the hospital network.",
        "The link to the {p} leaflet does not open on my phone.",
        "Verification failed twice, I can't access the HCP content{pii}.",
        "The chat page will not load behind our firewall.",
        "Could not download the {p} PDF, access denied.")),
    ("praise", "other", 0.2, (
        "Very quick and helpful, thank you.",
        "Great answer on {p}, exactly what I needed.",
        "Useful service, saves me a phone call.",
        "Clear and fast. Thanks!",
        "Helpful, the {p} dosing summary was spot on.")),
    ("wants more detail", "content", 0.1, (
        "The answer on {p} was too short, I needed the trial data.",
        "Please include references with the {p} answers.",
        "Would like more detail on {p} in renal patients.",
        "Answers are fine but lack the study numbers.")),
    ("samples and service", "service", 0.06, (
        "The {p} samples I ordered have still not arrived{pii}.",
        "My sample request took over a week.",
        "Nobody confirmed my meeting request.")),
)
RATING_REASONS = ("not_relevant", "incomplete", "unclear", "other")


@dataclass(frozen=True)
class SeedSpec:
    hcps: int = 500
    days: int = 90
    seed: int = 1
    end: date | None = None                # last day (inclusive); default: today (UTC)
    activity: float = 1.0                  # conversations per HCP scale (benchmarks use more)


@dataclass
class Item:
    content_id: str
    version: int
    product: str
    title: str
    body: str
    approval_code: str
    questions: list[str]
    markets: list[str]


@dataclass
class SeedReport:
    seed: int
    first_day: date
    last_day: date
    counts: dict[str, int] = field(default_factory=lambda: {t: 0 for t in TABLES})


class AlreadySeeded(Exception):
    pass


class NoContent(Exception):
    pass


def load_items(session: Session) -> list[Item]:
    rows = session.scalars(select(ContentVersion).where(ContentVersion.is_current.is_(True),
                                                        ContentVersion.withdrawn_at.is_(None))
                           .order_by(ContentVersion.content_id)).all()
    return [Item(r.content_id, r.version, r.product, r.title, r.body, r.approval_code, list(r.questions),
                 list(r.markets)) for r in rows]


class Generator:
    """Rows for a spec, chunk by chunk (dicts ready for ``insert(table)``), deterministic per seed."""

    def __init__(self, spec: SeedSpec, items: list[Item], *, today: date) -> None:
        if not items:
            raise NoContent("no approved content in the database: load the demo library first")
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.items = items
        self.by_product: dict[str, list[Item]] = {}
        for it in items:
            self.by_product.setdefault(it.product, []).append(it)
        self.last_day = spec.end or today
        self.first_day = self.last_day - timedelta(days=spec.days - 1)
        # a few items are "out of date": rated much worse
        stale_rng = random.Random(spec.seed * 7919 + 1)
        self.stale = {it.content_id for it in stale_rng.sample(items, k=max(1, len(items) // 12))}
        self.nps_last: dict[str, date] = {}

    # -- ids and small helpers

    def _id(self) -> str:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4).hex

    def _ref(self, prefix: str, at: datetime) -> str:
        return f"{prefix}-{at:%y%m%d}-{self.rng.getrandbits(32):08X}"

    def _pick(self, weights: dict[str, float]) -> str:
        keys = [k for k in weights if k in self.by_product] or list(self.by_product)
        return self.rng.choices(keys, weights=[weights.get(k, 1.0) for k in keys])[0]

    def _day_progress(self, day: date) -> float:
        return (day - self.first_day).days / max(1, self.spec.days - 1)

    def _when(self, day: date, country: str) -> datetime:
        """A local time in the HCP's working day (some evenings), as UTC."""
        hour = self.rng.choices((8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21),
                                weights=(4, 8, 9, 8, 7, 8, 9, 9, 8, 6, 4, 3, 2, 1))[0]
        local = datetime.combine(day, time(hour, self.rng.randrange(60), self.rng.randrange(60)), UTC)
        return local - timedelta(hours=UTC_OFFSET[country])

    # -- the generator

    def chunks(self) -> Iterator[dict[str, list[dict[str, Any]]]]:
        for start in range(0, self.spec.hcps, CHUNK_HCPS):
            rows: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
            for n in range(start, min(start + CHUNK_HCPS, self.spec.hcps)):
                self._hcp(n, rows)
            yield rows

    def _hcp(self, n: int, rows: dict[str, list[dict[str, Any]]]) -> None:
        rng = self.rng
        country, _, territories = rng.choices(COUNTRIES, weights=[c[1] for c in COUNTRIES])[0]
        specialty = rng.choices(list(SPECIALTIES), weights=[v[0] for v in SPECIALTIES.values()])[0]
        hcp_id = self._id()
        rows["hcp"].append({
            "id": hcp_id, "name": f"Dr {rng.choice(FIRST)} {rng.choice(LAST)}", "specialty": specialty,
            "licence_id": f"{LICENCE_PREFIX}-{self.spec.seed}-{n:06d}", "country": country,
            "verification_status": "verified" if rng.random() < 0.92 else "pending",
            "territory": f"{country}-{rng.choice(territories)}", "assigned_rep_id": None, "assigned_msl_id": None,
            "created_at": datetime.combine(self.first_day, time(8), UTC) - timedelta(days=rng.randrange(30, 400)),
        })
        # conversations per day: a skewed activity level (a few very active HCPs)
        rate = min(0.5, rng.lognormvariate(math.log(0.045), 0.8)) * self.spec.activity
        for d in range(self.spec.days):
            day = self.first_day + timedelta(days=d)
            weekday_factor = 0.3 if day.weekday() >= 5 else 1.0
            if rng.random() < rate * weekday_factor:
                self._conversation(hcp_id, country, specialty, day, rows)

    def _conversation(self, hcp_id: str, country: str, specialty: str, day: date,
                      rows: dict[str, list[dict[str, Any]]]) -> None:
        rng = self.rng
        channel = "whatsapp" if rng.random() < WHATSAPP_SHARE[country] else "webchat"
        start = self._when(day, country)
        progress = self._day_progress(day)
        conv_id = self._id()
        conv: dict[str, Any] = {
            "id": conv_id, "channel": channel, "address": None, "hcp_id": hcp_id, "state": "closed",
            "assigned_staff_id": None, "market": country, "audience": "hcp", "failed_turns": 0,
            "created_at": start, "last_inbound_at": start, "session_token_hash": None,
        }
        rows["conversation"].append(conv)
        at = start
        msgs = rows["message"]

        def message(direction: str, sender: str, body: str, when: datetime, **extra: Any) -> None:
            msgs.append({"conversation_id": conv_id, "direction": direction, "sender_type": sender,
                         "sender_id": None, "channel": channel, "channel_message_id": None, "body": body,
                         "payload": None, "buttons": None,
                         "status": "processed" if direction == "in" else rng.choice(("delivered", "read")),
                         "error": None, "content_id": extra.get("content_id"),
                         "content_version": extra.get("content_version"),
                         "approval_code": extra.get("approval_code"), "in_reply_to": None, "created_at": when,
                         "processed_at": when})

        if rng.random() < 0.4:
            message("in", "hcp", rng.choice(GREETINGS), at)
            at += timedelta(seconds=rng.randrange(2, 6))
            message("out", "bot", "Hello! How can I help you today?", at)
        product = self._pick(SPECIALTIES[specialty][1])
        escalated_any = False
        for _ in range(rng.choices((1, 2, 3), weights=(6, 3, 1))[0]):
            at += timedelta(seconds=rng.randrange(20, 240))
            escalated_any |= self._question(conv_id, country, product, progress, at, message, rows)
            at += timedelta(seconds=rng.randrange(2, 8))
        last_inbound = at
        # a person: asked for, or after an escalation
        wants_human = rng.random() < (0.32 if escalated_any else 0.05)
        if wants_human:
            at = self._handoff(conv_id, hcp_id, product, escalated_any, at, country, rows)
            message("out", "system", "A colleague has joined the conversation.", at)
        elif rng.random() < 0.13:
            self._service_request(conv_id, hcp_id, channel, product, at, country, rows)
        if rng.random() < 0.085:
            at += timedelta(seconds=rng.randrange(30, 300))
            self._comment(conv_id, hcp_id, product, at, rows)
            last_inbound = at
        if rng.random() < 0.12 and self._nps_due(hcp_id, day):
            at += timedelta(seconds=rng.randrange(30, 120))
            self._survey(conv_id, hcp_id, "nps", None, at, self._nps_score(escalated_any), rows)
        conv["last_inbound_at"] = last_inbound

    def _question(self, conv_id: str, country: str, product: str, progress: float, at: datetime,
                  message: Any, rows: dict[str, list[dict[str, Any]]]) -> bool:
        rng = self.rng
        items = [it for it in self.by_product[product] if country in it.markets] or self.by_product[product]
        # escalations fall over the period as content is added (the library team at work)
        escalate = rng.random() < 0.2 - 0.07 * progress
        answer_id = self._id()
        item = rng.choice(items)
        if escalate:
            query = rng.choice(UNANSWERED.get(product, UNANSWERED["cardiovex"])).format(p=product.capitalize())
            top = rng.sample(items, k=min(3, len(items)))
            decision, content_id, version, score = "escalate", None, None, round(rng.uniform(0.2, 0.5), 6)
        else:
            query = rng.choice(item.questions or [item.title])
            others = [it for it in items if it is not item]
            top = [item, *rng.sample(others, k=min(2, len(others)))]
            decision, content_id, version = "answer", item.content_id, item.version
            score = round(rng.uniform(0.62, 0.95), 6)
        message("in", "hcp", query, at)
        reply_at = at + timedelta(seconds=rng.randrange(1, 5))
        if escalate:
            message("out", "bot", ESCALATION_REPLY, reply_at)
        else:
            message("out", "bot", item.body, reply_at, content_id=item.content_id, content_version=item.version,
                    approval_code=item.approval_code)
        rows["answer"].append({
            "id": answer_id, "created_at": at, "conversation_id": conv_id, "message_id": None, "query": query,
            "market": country, "audience": "hcp", "verified": True, "decision": decision,
            "content_id": content_id, "content_version": version, "score": score,
            "candidates": [{"content_id": c.content_id, "version": c.version,
                            "score": round(score - 0.05 * i, 6)} for i, c in enumerate(top)],
            "gated_count": 0,
        })
        if rng.random() < 0.38:
            if escalate:
                p_helpful = 0.12
            elif item.content_id in self.stale:
                p_helpful = 0.45
            else:
                p_helpful = 0.78 + 0.08 * progress
            helpful = rng.random() < p_helpful
            rows["answer_rating"].append({
                "id": self._id(), "answer_id": answer_id, "conversation_id": conv_id, "hcp_id": None,
                "subject": "", "message_id": None, "helpful": helpful,
                "reason": None if helpful else rng.choice(RATING_REASONS),
                "created_at": reply_at + timedelta(seconds=rng.randrange(5, 90)), "updated_at": None,
            })
        return escalate

    def _handoff(self, conv_id: str, hcp_id: str, product: str, escalated: bool, at: datetime, country: str,
                 rows: dict[str, list[dict[str, Any]]]) -> datetime:
        rng = self.rng
        target = rng.choices(("rep", "msl", "medical_information"), weights=(5, 2, 3 if escalated else 1))[0]
        created = at + timedelta(seconds=rng.randrange(5, 60))
        local_hour = (created + timedelta(hours=UTC_OFFSET[country])).hour
        in_hours = 9 <= local_hour < 17 and created.weekday() < 5
        wait = rng.lognormvariate(math.log(240 if in_hours else 3600 * 9), 0.7)
        claimed = created + timedelta(seconds=wait)
        closed = claimed + timedelta(seconds=rng.randrange(300, 2400))
        rows["handoff"].append({
            "id": self._id(), "reference": f"H-{rng.getrandbits(40):010X}", "conversation_id": conv_id,
            "hcp_id": hcp_id, "target": target, "reason": "escalation" if escalated else "hcp_request",
            "summary": f"HCP asked about {product}; the bot {'could not answer' if escalated else 'answered'}. "
                       "Demo data.",
            "status": "closed", "sla_due_at": created + timedelta(hours=4), "requested_staff_id": None,
            "claimed_by": None, "claimed_at": claimed, "outcome": rng.choice(("resolved", "resolved", "follow_up")),
            "contact_preference": None if in_hours else rng.choice((None, "callback", "email")),
            "created_at": created, "closed_at": closed,
        })
        if rng.random() < 0.4:
            score = rng.choices((1, 2, 3, 4, 5), weights=(1, 1, 2, 5, 7) if in_hours else (2, 2, 3, 4, 3))[0]
            self._survey(conv_id, hcp_id, "csat", None, closed + timedelta(minutes=1), score, rows)
        return claimed

    def _service_request(self, conv_id: str, hcp_id: str, channel: str, product: str, at: datetime,
                         country: str, rows: dict[str, list[dict[str, Any]]]) -> None:
        rng = self.rng
        kind = rng.choices(list(SLA), weights=(5, 2, 2, 2, 2, 1))[0]
        created = at + timedelta(seconds=rng.randrange(30, 240))
        sla = SLA[kind]
        resolve_s = rng.lognormvariate(math.log(sla.total_seconds() * 0.45), 0.6)
        completed: datetime | None = created + timedelta(seconds=resolve_s)
        end_of_data = datetime.combine(self.last_day + timedelta(days=1), time.min, UTC)
        if completed is not None and (completed >= end_of_data or rng.random() < 0.03):
            completed = None
        status = "resolved" if completed else rng.choice(("open", "in_progress"))
        req_id = self._id()
        rows["service_request"].append({
            "id": req_id, "reference": self._ref("SR", created), "kind": kind.value, "status": status,
            "team": TEAM[kind].value, "conversation_id": conv_id, "hcp_id": hcp_id, "message_id": None,
            "channel": channel, "product": product if kind.value not in ("contact_update", "meeting") else None,
            "details": {"demo": True}, "created_at": created, "sla_due_at": created + sla, "completed_at": completed,
        })
        if completed is not None and rng.random() < 0.45:
            late = completed > created + sla
            score = rng.choices((1, 2, 3, 4, 5), weights=(3, 3, 3, 3, 2) if late else (1, 1, 2, 6, 8))[0]
            self._survey(conv_id, hcp_id, "csat", req_id, completed + timedelta(hours=rng.randrange(1, 20)),
                         score, rows)

    def _survey(self, conv_id: str, hcp_id: str, kind: str, request_id: str | None, asked: datetime,
                score: int, rows: dict[str, list[dict[str, Any]]]) -> None:
        rng = self.rng
        answered = rng.random() < 0.7
        end_of_data = datetime.combine(self.last_day + timedelta(days=1), time.min, UTC)
        answered_at = asked + timedelta(seconds=rng.randrange(20, 3600)) if answered else None
        if answered_at is not None and answered_at >= end_of_data:
            answered_at = None
        if asked >= end_of_data:
            return
        rows["survey_response"].append({
            "id": self._id(), "kind": kind, "status": "answered" if answered_at else "asked",
            "conversation_id": conv_id, "hcp_id": hcp_id, "subject": f"hcp:{hcp_id}",
            "service_request_id": request_id, "score": score if answered_at else None, "message_id": None,
            "asked_at": asked, "answered_at": answered_at,
        })

    def _nps_due(self, hcp_id: str, day: date) -> bool:
        last = self.nps_last.get(hcp_id)
        if last is not None and (day - last).days < 90:
            return False
        self.nps_last[hcp_id] = day
        return True

    def _nps_score(self, escalated: bool) -> int:
        weights = (1, 1, 1, 1, 1, 2, 3, 5, 8, 9, 8) if not escalated else (2, 2, 2, 3, 3, 4, 5, 6, 5, 4, 3)
        return self.rng.choices(range(11), weights=weights)[0]

    def _comment(self, conv_id: str, hcp_id: str, product: str, at: datetime,
                 rows: dict[str, list[dict[str, Any]]]) -> None:
        rng = self.rng
        _, category, _, templates = rng.choices(COMMENTS, weights=[c[2] for c in COMMENTS])[0]
        pii = ""
        if "{pii}" in (tpl := rng.choice(templates)) and rng.random() < 0.5:
            pii = rng.choice((
                f" on +44 7700 900{rng.randrange(1000):03d}",
                f", my number is 0151 496 0{rng.randrange(1000):03d}",
                f" at dr.{rng.choice(LAST).lower()}@clinic.example",
                f" - Dr {rng.choice(FIRST)} {rng.choice(LAST)}",
                f", licence GMC {rng.randrange(1000000, 9999999)}"))
        text = tpl.format(p=product.capitalize(), pii=pii)
        rows["feedback_comment"].append({
            "id": self._id(), "conversation_id": conv_id, "hcp_id": hcp_id, "subject": f"hcp:{hcp_id}",
            "message_id": None, "text": text, "category": category, "created_at": at,
        })


def _fill_subjects(rows: dict[str, list[dict[str, Any]]]) -> None:
    """Ratings carry the HCP of their conversation (filled once the conversation rows exist)."""
    owner = {c["id"]: c["hcp_id"] for c in rows["conversation"]}
    for r in rows["answer_rating"]:
        r["hcp_id"] = owner[r["conversation_id"]]
        r["subject"] = f"hcp:{r['hcp_id']}"


MODELS: dict[str, Any] = {"hcp": Hcp, "conversation": Conversation, "message": Message, "answer": Answer,
                          "answer_rating": AnswerRating, "handoff": Handoff, "service_request": ServiceRequest,
                          "survey_response": SurveyResponse, "feedback_comment": FeedbackComment}


def seed(session: Session, spec: SeedSpec, *, now: datetime) -> SeedReport:
    """Generate and insert; refuses a seed already used (its HCPs exist). Flushes; the caller commits."""
    tag = f"{LICENCE_PREFIX}-{spec.seed}-%"
    if session.execute(select(func.count()).select_from(Hcp).where(Hcp.licence_id.like(tag))).scalar_one():
        raise AlreadySeeded(f"demo data with seed {spec.seed} is already in this database; "
                            "use another --seed to add a batch")
    if spec.hcps < 1 or spec.days < 1:
        raise ValueError("--hcps and --days must be at least 1")
    gen = Generator(spec, load_items(session), today=now.astimezone(UTC).date())
    report = SeedReport(spec.seed, gen.first_day, gen.last_day)
    for rows in gen.chunks():
        _fill_subjects(rows)
        for table in TABLES:
            if rows[table]:
                session.execute(insert(MODELS[table].__table__), rows[table])
                report.counts[table] += len(rows[table])
    # bulk inserts bypass the ORM's flush hook: record the products and mark the days for the CX rollups
    rollups.after_bulk_load(session, gen.first_day, gen.last_day)
    audit.record(session, action="demo.seeded", subject_type="demo", subject_id=str(spec.seed), actor_type="system",
                 data={"seed": spec.seed, "hcps": spec.hcps, "days": spec.days,
                       "first_day": gen.first_day.isoformat(), "last_day": gen.last_day.isoformat(),
                       "counts": report.counts}, at=now)
    session.flush()
    return report


def has_hcps(session: Session) -> bool:
    return session.execute(select(Hcp.id).limit(1)).first() is not None
