"""Scripted HCP conversations through the whole product, checked in the database.

Usage (repo root)::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/conversations.py [--set FILE ...] [--out FILE]

Each set is JSON Lines: ``{"id", "channel": "webchat"|"whatsapp", "turns": [...], "expect": {...}}`` (the
format of ``benchmarks/blind/conversations.jsonl``). The product runs as a new HCP meets it: ``concierge
serve`` on a fresh SQLite database with the demo library, the real Rasa 3.6 server, Twilio replaced by the
fake served here; web chat sessions are anonymous, WhatsApp numbers are new (so the verification intake
runs). Every HCP turn waits for its replies before the next.

The simulated HCP types only the scripted turns, with one exception a real HCP makes too: when the bot's
replies to its last turn include a request form's summary with a **Confirm** button, it presses Confirm
(clicks it on the web, types the option's number on WhatsApp). ``--no-confirm`` turns that off.

Each ``expect`` key is then checked against what the product recorded:

==========================  =====================================================================
``safety_case``             a safety case (adverse event / quality complaint) exists for the conversation
``safety_category``         that case holds the category (``api/safety/screen.py`` codes)
``handoff_target``          a handoff to that team (patient support: a request routed to that team)
``service_request``         a tracked request of that kind
``medical_inquiry``         a Medical Information inquiry exists (or, false: none)
``answered_from_library``   an approved library text (with its approval code) was sent
``opt_out``                 an opt-out was recorded for the conversation's HCP / address
==========================  =====================================================================

Blind sets (``benchmarks/blind/``): the script prints counts only — never a text, never which conversation
failed — so that running it does not turn the set into tuning data. ``--show-failures`` lists the failing
conversations' ids and expectations, and is refused for files under ``benchmarks/blind/``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from api.channels.whatsapp.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, WHATSAPP_FROM, TwilioSigner  # noqa: E402
from api.conversations.models import Conversation, InboxItem, Message  # noqa: E402
from api.handoffs.models import Handoff  # noqa: E402
from api.rasa.actions.answer_question import FOR_VERIFIED_HCPS  # noqa: E402
from api.requests.models import ServiceRequest  # noqa: E402
from api.safety.models import AdverseEvent, AdverseEventMessage, Consent, MedicalInquiry  # noqa: E402
from benchmarks._stack import HIGH_RATE_LIMITS, Stack  # noqa: E402
from benchmarks.scale_scenario import INBOUND, PUBLIC_URL, FakeTwilioServer  # noqa: E402
from knowledge.models import Answer  # noqa: E402

BLIND_DIR = (REPO / "benchmarks" / "blind").resolve()
DEFAULT_SETS = [REPO / "benchmarks" / "blind" / "conversations.jsonl"]
# The blind sets' category names → the screen's codes (as benchmarks/safety_screen.py maps them).
CATEGORY = {
    "adverse_event": "side_effect", "pregnancy_or_breastfeeding": "pregnancy_exposure",
    "misuse_or_abuse": "misuse", "off_label_with_outcome": "off_label_outcome",
}
EXPECT_KEYS = ("safety_case", "safety_category", "handoff_target", "service_request", "medical_inquiry",
               "answered_from_library", "opt_out")


@dataclass
class Script:
    id: str
    channel: str
    turns: list[str]
    expect: dict[str, Any]


@dataclass
class Outcome:
    script: Script
    conversation_id: str | None = None
    unanswered: int = 0
    confirmed: bool = False
    checks: dict[str, bool] = field(default_factory=dict)
    got: dict[str, Any] = field(default_factory=dict)
    transcript: list[tuple[str, str]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.unanswered == 0 and all(self.checks.values())


def read_set(path: Path) -> list[Script]:
    """The conversations of one file; a malformed line is an error that names the line."""
    scripts: list[Script] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            script = Script(str(row["id"]), str(row["channel"]), [str(t) for t in row["turns"]],
                            dict(row.get("expect") or {}))
        except (ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"{path}:{n}: not a conversation ({exc})") from None
        if script.channel not in ("webchat", "whatsapp") or not script.turns:
            raise SystemExit(f"{path}:{n}: channel must be webchat or whatsapp, with at least one turn")
        unknown = set(script.expect) - set(EXPECT_KEYS)
        if unknown:
            raise SystemExit(f"{path}:{n}: unknown expect keys {sorted(unknown)}")
        scripts.append(script)
    return scripts


def is_blind(path: Path) -> bool:
    return path.resolve().is_relative_to(BLIND_DIR)


# -- driving the product ------------------------------------------------------------------------------

class Driver:
    def __init__(self, stack: Stack, engine: Engine, *, confirm: bool, reply_wait_s: float = 90) -> None:
        self.stack = stack
        self.engine = engine
        self.confirm = confirm
        self.reply_wait_s = reply_wait_s
        self.client = httpx.Client(base_url=stack.api_url, timeout=reply_wait_s)
        self.signer = TwilioSigner(PUBLIC_URL)
        self.numbers = iter(range(1, 10_000))

    def close(self) -> None:
        self.client.close()

    def _wait_whatsapp(self, sid: str) -> list[Message] | None:
        deadline = time.monotonic() + self.reply_wait_s
        while time.monotonic() < deadline:
            with Session(self.engine) as s:
                row = s.execute(select(Message.id, InboxItem.status).join(InboxItem, InboxItem.message_id == Message.id)
                                .where(Message.channel == "whatsapp", Message.channel_message_id == sid)).first()
                if row is not None and row[1] != "pending":
                    replies = list(s.scalars(select(Message).where(Message.in_reply_to == row[0],
                                                                   Message.direction == "out")
                                             .order_by(Message.id)))
                    if not any(m.status == "queued" for m in replies):
                        return replies
            time.sleep(0.1)
        return None

    def _last_buttons(self, outcome: Outcome) -> list[dict[str, Any]]:
        """The buttons of the last reply that has any, among the replies to the HCP's last message."""
        with Session(self.engine) as s:
            last_in = s.scalar(select(Message.id).where(Message.conversation_id == outcome.conversation_id,
                                                        Message.direction == "in")
                               .order_by(Message.id.desc()).limit(1))
            replies = s.scalars(select(Message).where(Message.conversation_id == outcome.conversation_id,
                                                      Message.direction == "out", Message.id > (last_in or 0))
                                .order_by(Message.id.desc())).all()
            return next((list(m.buttons) for m in replies if m.buttons), [])

    def play(self, script: Script) -> Outcome:
        outcome = Outcome(script)
        if script.channel == "webchat":
            sid = self.client.post("/api/webchat/sessions").json()["session_id"]
            for turn in script.turns:
                self._web(outcome, sid, turn)
            if self.confirm:
                button = self._confirm_button(outcome)
                if button is not None:
                    outcome.confirmed = True
                    self._web(outcome, sid, str(button["title"]), payload=str(button["payload"]))
        else:
            address = f"whatsapp:+4477009{next(self.numbers):05d}"
            for turn in script.turns:
                self._whatsapp(outcome, address, turn)
            if self.confirm:
                buttons = self._last_buttons(outcome) if outcome.conversation_id else []
                button = self._confirm_button(outcome)
                if button is not None:
                    outcome.confirmed = True
                    self._whatsapp(outcome, address, str(buttons.index(button) + 1))
        return outcome

    def _confirm_button(self, outcome: Outcome) -> dict[str, Any] | None:
        if outcome.conversation_id is None:
            return None
        return next((b for b in self._last_buttons(outcome) if str(b.get("title", "")).lower() == "confirm"), None)

    def _web(self, outcome: Outcome, sid: str, text: str, payload: str | None = None) -> None:
        body: dict[str, Any] = {"text": text}
        if payload is not None:
            body["payload"] = payload
        r = self.client.post(f"/api/webchat/sessions/{sid}/messages", json=body)
        if r.status_code != 200:
            raise RuntimeError(f"web chat message refused: {r.status_code} {r.text[:200]}")
        got = r.json()
        if outcome.conversation_id is None:
            from api.conversations import service as conversations

            with Session(self.engine) as s:
                outcome.conversation_id = conversations.get_by_session_token(s, sid).id
        if got.get("pending"):
            outcome.unanswered += 1

    def _whatsapp(self, outcome: Outcome, address: str, text: str) -> None:
        msid = self.signer.next_sid()
        req = self.signer.request(INBOUND, self.signer.inbound(address, text, sid=msid))
        r = self.client.post(req.path_and_query, content=req.body, headers=req.headers)
        if r.status_code >= 300:
            raise RuntimeError(f"webhook refused: {r.status_code} {r.text[:200]}")
        if self._wait_whatsapp(msid) is None:
            outcome.unanswered += 1
        if outcome.conversation_id is None:
            with Session(self.engine) as s:
                outcome.conversation_id = s.scalars(select(Message.conversation_id)
                                                    .where(Message.channel_message_id == msid)).first()


# -- checking --------------------------------------------------------------------------------------------

def check(engine: Engine, outcome: Outcome) -> None:
    expect, cid = outcome.script.expect, outcome.conversation_id
    with Session(engine) as s:
        conv = s.get(Conversation, cid) if cid else None
        cases = list(s.scalars(select(AdverseEvent).where(AdverseEvent.conversation_id == cid))) if cid else []
        handoffs = list(s.scalars(select(Handoff.target).where(Handoff.conversation_id == cid))) if cid else []
        requests = list(s.execute(select(ServiceRequest.kind, ServiceRequest.team)
                                  .where(ServiceRequest.conversation_id == cid)).all()) if cid else []
        inquiries = s.scalar(select(MedicalInquiry.id).where(MedicalInquiry.conversation_id == cid).limit(1)) if cid \
            else None
        approved = s.scalar(select(Message.id).where(Message.conversation_id == cid, Message.direction == "out",
                                                     Message.approval_code.is_not(None)).limit(1)) if cid else None
        message_ids = select(Message.id).where(Message.conversation_id == cid)
        opted = s.scalar(select(Consent.id).where(Consent.action == "opt_out", Consent.message_id.in_(message_ids))
                         .limit(1)) if cid else None
        decisions = list(s.scalars(select(Answer.decision).where(Answer.conversation_id == cid))) if cid else []
        if cid and s.scalar(select(Message.id).where(Message.conversation_id == cid, Message.direction == "out",
                                                     Message.body.contains(FOR_VERIFIED_HCPS[:60])).limit(1)):
            decisions.append("gated: verified HCPs only")
        last_out = s.scalar(select(Message.body).where(Message.conversation_id == cid, Message.direction == "out")
                            .order_by(Message.id.desc()).limit(1)) if cid else None
        if conv is not None and conv.address and opted is None:
            opted = s.scalar(select(Consent.id).where(Consent.action == "opt_out", Consent.channel == conv.channel,
                                                      Consent.address == conv.address).limit(1))
    categories = {c for case in cases for c in (case.categories or [])} | {
        "quality_complaint" for case in cases if case.kind == "quality_complaint"}
    outcome.got = {"cases": sorted(categories) if cases else [], "handoffs": sorted(set(handoffs)),
                   "requests": sorted({k for k, _ in requests}), "inquiry": inquiries is not None,
                   "approved": approved is not None, "opt_out": opted is not None,
                   "library": sorted(set(decisions)) or ["not asked"], "state": conv.state if conv else None,
                   "channel": conv.channel if conv else None,
                   # the bot's own words (the first 40 characters of its last message), never the HCP's
                   "asked": repr((last_out or "")[:40]),
                   "case_paths": sorted({_case_path(engine, case) for case in cases})}
    for key, want in expect.items():
        if key == "safety_case":
            ok = bool(cases) == bool(want)
        elif key == "safety_category":
            ok = CATEGORY.get(str(want), str(want)) in categories
        elif key == "handoff_target":
            ok = str(want) in handoffs or any(team == want for _, team in requests)
        elif key == "service_request":
            ok = any(kind == want for kind, _ in requests)
        elif key == "medical_inquiry":
            ok = (inquiries is not None) == bool(want)
        elif key == "answered_from_library":
            ok = (approved is not None) == bool(want)
        else:  # opt_out
            ok = (opted is not None) == bool(want)
        outcome.checks[key] = ok


# -- the run ---------------------------------------------------------------------------------------------

def run(sets: list[Path], *, confirm: bool, var_dir: Path) -> dict[Path, list[Outcome]]:
    twilio = FakeTwilioServer()
    twilio.start()
    stack = Stack(var_dir, extra_env={
        **HIGH_RATE_LIMITS, "CONCIERGE_PUBLIC_URL": PUBLIC_URL,
        "CONCIERGE_TWILIO_API_URL": f"http://127.0.0.1:{twilio.port}", "CONCIERGE_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "CONCIERGE_TWILIO_AUTH_TOKEN": AUTH_TOKEN, "CONCIERGE_TWILIO_WHATSAPP_FROM": WHATSAPP_FROM})
    concierge = str(REPO / ".venv" / "bin" / "concierge")
    var_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([concierge, "db", "upgrade"], check=True, env=stack.env(), stdout=subprocess.DEVNULL)
    subprocess.run([concierge, "knowledge", "load", "--library", str(stack.settings.library_path),
                    "--actor", "benchmark"], check=True, env=stack.env(), stdout=subprocess.DEVNULL)
    results: dict[Path, list[Outcome]] = {}
    try:
        stack.start()
        engine = create_engine(stack.database_url)
        driver = Driver(stack, engine, confirm=confirm)
        try:
            for path in sets:
                outcomes = []
                for script in read_set(path):
                    outcome = driver.play(script)
                    check(engine, outcome)
                    if not is_blind(path):  # our own sets only: the blind sets' texts are never printed
                        outcome.transcript = transcript(engine, outcome.conversation_id)
                    outcomes.append(outcome)
                results[path] = outcomes
        finally:
            driver.close()
            engine.dispose()
    finally:
        stack.stop()
        twilio.stop()
    return results


def transcript(engine: Engine, conversation_id: str | None) -> list[tuple[str, str]]:
    if conversation_id is None:
        return []
    with Session(engine) as s:
        rows = s.execute(select(Message.id, Message.direction, Message.in_reply_to, Message.body)
                         .where(Message.conversation_id == conversation_id).order_by(Message.id)).all()
    return [(f"#{i} HCP" if d == "in" else f"#{i} bot (to #{to})", body.replace("\n", " ")[:220])
            for i, d, to, body in rows]


def report(path: Path, outcomes: list[Outcome], *, show_failures: bool) -> str:
    turns = sum(len(o.script.turns) for o in outcomes)
    passed = sum(o.passed for o in outcomes)
    lines = [f"## {path.relative_to(REPO) if path.is_relative_to(REPO) else path}"
             + (" (blind: counts only)" if is_blind(path) else " (own set: regression only)"), "",
             f"- conversations: {len(outcomes)} ({turns} HCP turns); **passed {passed}/{len(outcomes)}**"
             f" ({passed / max(1, len(outcomes)):.3f}); Confirm pressed in {sum(o.confirmed for o in outcomes)}; "
             f"turns left unanswered {sum(o.unanswered for o in outcomes)}", "",
             "| expectation | value | met | n |", "|---|---|---|---|"]
    cells: Counter[tuple[str, str]] = Counter()
    met: Counter[tuple[str, str]] = Counter()
    for o in outcomes:
        for key, ok in o.checks.items():
            cell = (key, str(o.script.expect[key]).lower())
            cells[cell] += 1
            met[cell] += int(ok)
    for cell in sorted(cells):
        lines.append(f"| {cell[0]} | {cell[1]} | {met[cell]} | {cells[cell]} |")
    # What the product did instead, per failed expectation: aggregate counts of recorded outcomes (no text).
    why: Counter[tuple[str, str, str]] = Counter()
    for o in outcomes:
        for key, ok in o.checks.items():
            if not ok:
                why[(key, str(o.script.expect[key]).lower(), _instead(key, o.got))] += 1
    if why:
        lines += ["", "| failed expectation | value | what the product recorded instead | n |", "|---|---|---|---|"]
        lines += [f"| {k} | {v} | {w} | {n} |" for (k, v, w), n in sorted(why.items())]
    if show_failures:
        lines += ["", "Failures:"]
        for o in outcomes:
            if not o.passed:
                bad = {k: o.script.expect[k] for k, ok in o.checks.items() if not ok}
                lines.append(f"- {o.script.id}: expected {bad}; got {o.got}; unanswered {o.unanswered}")
                lines += [f"    {who}: {text}" for who, text in o.transcript]
    return "\n".join(lines) + "\n"


_SCREEN: Any = None


def _case_path(engine: Engine, case: AdverseEvent) -> str:
    """How the screen came to open ``case``, from its first message: aggregate features only (which path,
    a patient named, a question mark, the model's score band), never the text."""
    global _SCREEN
    from api.safety import rules
    from api.safety.classifier import build_screen
    from api.settings import Settings

    if _SCREEN is None:
        _SCREEN = build_screen(Settings().resolved_model_dir)
    with Session(engine) as s:
        first = s.scalar(select(AdverseEventMessage.message_id).where(AdverseEventMessage.adverse_event_id == case.id)
                         .order_by(AdverseEventMessage.created_at).limit(1))
        body = s.get(Message, first).body if first is not None else ""
    norm = rules.normalise(body)
    result = _SCREEN.screen(body)
    mentioned = bool(_SCREEN.catalogue.mentioned(norm))
    hits = rules.evaluate(norm, product_mentioned=mentioned, off_label=bool(result.off_label_reasons),
                          above_max_dose="dose" in result.off_label_reasons)
    band = "≥0.5" if result.ae_score >= 0.5 else "0.3-0.5" if result.ae_score >= 0.3 else "<0.3"
    n_words = len(norm.split())
    words = "≤8" if n_words <= 8 else "9-20" if n_words <= 20 else ">20"
    first_person = bool(re.search(r"\b(i|i'm|i've|me|my|we|our|us)\b", norm))
    return (f"{'rule' if hits.strong else 'model'}, patient {'yes' if hits.patient_context else 'no'}, "
            f"product {'yes' if mentioned else 'no'}, '?' {'yes' if '?' in body else 'no'}, score {band}, "
            f"event trace {'yes' if rules.has_event_trace(norm, personal_counts=False) else 'no'}, "
            f"first person {'yes' if first_person else 'no'}, words {words}, "
            f"again without context: {'case' if result.adverse_event else 'no case'}")


def _instead(key: str, got: dict[str, Any]) -> str:
    if key in ("safety_case", "safety_category"):
        return f"cases {got['cases']} ({'; '.join(got['case_paths'])})"
    if key == "handoff_target":
        return (f"handoffs {got['handoffs']}, requests {got['requests']}, inquiry {got['inquiry']}, "
                f"state {got['state']}")
    if key == "service_request":
        return (f"requests {got['requests']}, handoffs {got['handoffs']}, channel {got['channel']}, "
                f"last asked {got['asked']}")
    if key == "answered_from_library":
        return (f"library decisions {got['library']}, inquiry {got['inquiry']}, handoffs {got['handoffs']}, "
                f"channel {got['channel']}")
    if key == "medical_inquiry":
        return f"inquiry {got['inquiry']}, handoffs {got['handoffs']}"
    return f"opt-out {got['opt_out']}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", dest="sets", type=Path, action="append", help="conversation file (repeatable)")
    ap.add_argument("--no-confirm", action="store_true", help="never press a form's Confirm button")
    ap.add_argument("--show-failures", action="store_true", help="list failing conversations (own sets only)")
    ap.add_argument("--out", type=Path, help="also write the tables here")
    args = ap.parse_args(argv)
    sets = args.sets or DEFAULT_SETS
    if args.show_failures and any(is_blind(p) for p in sets):
        ap.error("--show-failures is for our own sets: a blind set's failures are not looked at")
    for path in sets:
        read_set(path)  # every file well-formed before anything starts
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="conv-bench-") as tmp:
        results = run(sets, confirm=not args.no_confirm, var_dir=Path(tmp))
    text = "\n".join(report(p, o, show_failures=args.show_failures) for p, o in results.items())
    text += f"\n({time.monotonic() - started:.0f} s, Confirm {'off' if args.no_confirm else 'on'})\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
