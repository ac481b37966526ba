"""Agent assist: how often the Inbox's suggested approved replies hold the item staff then sent.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/agent_assist.py [--set dev|blind|both] [--unverified]

Each seeded conversation (``benchmarks/data/assist_conversations_*.jsonl``: id, market,
hcp_messages, expected_item = the content id staff sent, or null when no approved item fits)
is stored as a web chat of a known HCP in that market (verified unless ``--unverified``) in a
scratch SQLite database with the demo library loaded, its messages marked screened; then
``api.handoffs.suggest.suggestions`` runs exactly as the console calls it (the real MiniLM
knowledge base, the second stage, the bot's gate) on the date below.

Figures, per set: hit@1 and hit@3 over the cases with an expected item; "shown none" = such a
case got no suggestion at all; and, over the null cases, how often a suggestion was shown anyway.
Cases whose expected item the gate withholds from that HCP on that date (expired, withdrawn,
draft, another market, verification) are counted as misses in the headline and also listed
apart: not suggesting them is the gate doing its job. The dev set also gets a sweep of the
display floor (``SUGGEST_FLOOR`` was chosen on it); the blind set is run at the product's floor.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from api.content import recipient_for  # noqa: E402
from api.conversations import service as conversations  # noqa: E402
from api.conversations.models import Conversation, InboxItem, InboxStatus, MessageStatus  # noqa: E402
from api.db import make_engine  # noqa: E402
from api.handoffs.suggest import SUGGEST_FLOOR, Suggestion, suggestions  # noqa: E402
from api.hcps.models import Hcp, VerificationStatus  # noqa: E402
from api.migrate import upgrade  # noqa: E402
from knowledge.engine import KnowledgeBase  # noqa: E402
from knowledge.gate import gate_reason  # noqa: E402
from knowledge.models import ContentVersion  # noqa: E402
from knowledge.service import load_library  # noqa: E402

DATA = REPO / "benchmarks" / "data"
SETS = {"dev": DATA / "assist_conversations_dev.jsonl", "blind": DATA / "assist_conversations_blind.jsonl"}
LIBRARY = REPO / "knowledge" / "content"
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
SWEEP = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)


@dataclass
class Case:
    id: str
    market: str
    messages: list[str]
    expected: str | None
    found: list[Suggestion] = field(default_factory=list)  # at floor 0: every ranked item, best first
    expected_gated: str | None = None  # why the gate withholds the expected item from this HCP today


def read_set(path: Path) -> list[Case]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row: dict[str, Any] = json.loads(line)
            expected = row.get("expected_item")
            out.append(Case(str(row["id"]), str(row["market"]).upper(), [str(m) for m in row["hcp_messages"]],
                            str(expected).upper() if expected else None))
    return out


def seed(session: Session, case: Case, *, verified: bool) -> Conversation:
    conv, _token = conversations.create_webchat(session, now=NOW, market=case.market)
    hcp = Hcp(created_at=NOW, name=f"Seeded {case.id}", country=case.market,
              verification_status=VerificationStatus.verified if verified else VerificationStatus.pending)
    session.add(hcp)
    session.flush()
    conv.hcp_id = hcp.id
    for text in case.messages:
        msg = conversations.persist_inbound(session, conv, text=text, now=NOW).message
        inbox = session.execute(select(InboxItem).where(InboxItem.message_id == msg.id)).scalar_one()
        inbox.status = InboxStatus.done
        msg.status = MessageStatus.processed
    session.flush()
    return conv


def run_set(session: Session, kb: KnowledgeBase, cases: list[Case], *, verified: bool) -> float:
    started = time.perf_counter()
    for case in cases:
        conv = seed(session, case, verified=verified)
        case.found = suggestions(session, kb, conv, None, now=NOW, default_market=case.market, floor=0.0)
        if case.expected:
            version = session.scalars(select(ContentVersion).where(ContentVersion.content_id == case.expected,
                                                                   ContentVersion.is_current.is_(True))).one_or_none()
            recipient = recipient_for(session, conv, case.market)
            case.expected_gated = ("not in the library" if version is None
                                   else gate_reason(version, recipient, NOW.date()))
    return (time.perf_counter() - started) / max(1, len(cases))


def score(cases: list[Case], floor: float) -> dict[str, Any]:
    answerable = [c for c in cases if c.expected]
    nulls = [c for c in cases if not c.expected]

    def shown(c: Case) -> list[str]:
        return [s.content_id for s in c.found if s.score >= floor]

    hit1 = sum(1 for c in answerable if shown(c)[:1] == [c.expected])
    hit3 = sum(1 for c in answerable if c.expected in shown(c)[:3])
    open_ = [c for c in answerable if not c.expected_gated]
    return {
        "floor": floor, "n": len(answerable), "hit1": hit1, "hit3": hit3,
        "none_shown": sum(1 for c in answerable if not shown(c)),
        "n_open": len(open_), "hit1_open": sum(1 for c in open_ if shown(c)[:1] == [c.expected]),
        "hit3_open": sum(1 for c in open_ if c.expected in shown(c)[:3]),
        "gated": [(c.id, c.expected, c.expected_gated) for c in answerable if c.expected_gated],
        "gated_shown": sum(1 for c in answerable if c.expected_gated and c.expected in shown(c)),
        "nulls": len(nulls), "null_shown": sum(1 for c in nulls if shown(c)),
    }


def pct(a: int, b: int) -> str:
    return f"{100 * a / b:.1f} % ({a}/{b})" if b else "—"


def report(name: str, r: dict[str, Any]) -> str:
    return (f"| {name} | {r['floor']:.2f} | {pct(r['hit1'], r['n'])} | {pct(r['hit3'], r['n'])} | "
            f"{pct(r['hit1_open'], r['n_open'])} | {pct(r['hit3_open'], r['n_open'])} | "
            f"{pct(r['none_shown'], r['n'])} | {pct(r['null_shown'], r['nulls'])} |")


HEADER = ("| set | floor | hit@1 | hit@3 | hit@1 (expected item sendable) | hit@3 (sendable) | "
          "shown none | null case shown a suggestion |\n|---|---|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=("dev", "blind", "both"), default="both")
    parser.add_argument("--unverified", action="store_true", help="seed the HCPs as not yet verified")
    parser.add_argument("--index-dir", type=Path, default=REPO / "var" / "index")
    args = parser.parse_args()
    names = ["dev", "blind"] if args.set == "both" else [args.set]
    kb = KnowledgeBase(args.index_dir)
    with tempfile.TemporaryDirectory(prefix="assist-bench-") as tmp:
        engine = make_engine(f"sqlite:///{tmp}/bench.db")
        upgrade(engine)
        factory = sessionmaker(bind=engine, expire_on_commit=False)
        with factory() as session:
            load_library(session, LIBRARY, actor="benchmark")
            session.commit()
            lines = [f"Agent assist, {NOW.date()}, HCPs {'not ' if args.unverified else ''}verified, "
                     f"product floor {SUGGEST_FLOOR}", "", HEADER]
            details: list[str] = []
            for name in names:
                path = SETS[name]
                if not path.exists():
                    print(f"{path} is missing; skipped", file=sys.stderr)
                    continue
                cases = read_set(path)
                per_case = run_set(session, kb, cases, verified=not args.unverified)
                floors = SWEEP if name == "dev" else (SUGGEST_FLOOR,)
                for floor in floors:
                    lines.append(report(name + (" ◀ product" if floor == SUGGEST_FLOOR else ""), score(cases, floor)))
                r = score(cases, SUGGEST_FLOOR)
                details.append(f"{name}: {len(cases)} conversations, {per_case * 1000:.0f} ms each; expected item "
                               f"withheld by the gate: {r['gated'] or 'none'} (suggested anyway: {r['gated_shown']})")
                misses = [(c.id, c.expected, [s.content_id for s in c.found if s.score >= SUGGEST_FLOOR])
                          for c in cases if c.expected and c.expected not in
                          [s.content_id for s in c.found if s.score >= SUGGEST_FLOOR][:3]]
                details.append(f"{name} misses at the product floor (id, expected, shown): {misses}")
                wrong_nulls = [(c.id, [s.content_id for s in c.found if s.score >= SUGGEST_FLOOR])
                               for c in cases if not c.expected and any(s.score >= SUGGEST_FLOOR for s in c.found)]
                details.append(f"{name} null cases shown a suggestion: {wrong_nulls}")
            session.rollback()
        engine.dispose()
    print("\n".join([*lines, "", *details]))


if __name__ == "__main__":
    main()
