"""``concierge demo seed``: deterministic, refuses a used seed, real content ids, plausible KPIs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.cli import main
from api.conversations.models import Message
from api.demo import seed as demo
from api.demo.seed import Generator, Item, SeedSpec
from api.hcps.models import Hcp
from feedback import kpis
from feedback.models import FeedbackComment
from knowledge.models import Answer, ContentVersion
from knowledge.service import load_library
from tests.conftest import REPO

END = date(2026, 6, 30)


def _items() -> list[Item]:
    return [Item(f"{p[:3].upper()}-{i}", 1 + i % 2, p, f"{p} item {i}", f"Body {i}", f"CODE-{p}-{i}",
                 [f"What about {p} {i}?"], ["GB", "DE", "US"])
            for p in ("cardiovex", "glucorel", "respizan") for i in range(4)]


def _all_rows(spec: SeedSpec) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {}
    for chunk in Generator(spec, _items(), today=END).chunks():
        for table, rows in chunk.items():
            out.setdefault(table, []).extend(rows)
    return out


def test_the_same_seed_gives_the_same_rows_and_another_seed_others() -> None:
    spec = SeedSpec(hcps=60, days=30, seed=7, end=END)
    first, again = _all_rows(spec), _all_rows(spec)
    assert first == again
    other = _all_rows(SeedSpec(hcps=60, days=30, seed=8, end=END))
    assert other["hcp"] != first["hcp"]
    assert {r["licence_id"] for r in first["hcp"]} == {f"DEMO-7-{n:06d}" for n in range(60)}
    # everything inside the window, both channels used
    lo = datetime(2026, 6, 1, tzinfo=UTC)
    hi = datetime(2026, 7, 1, tzinfo=UTC)
    assert all(lo <= r["created_at"] < hi for r in first["conversation"])  # type: ignore[operator]
    assert {r["channel"] for r in first["conversation"]} == {"webchat", "whatsapp"}


def test_seeding_a_database(session: Session) -> None:
    load_library(session, REPO / "knowledge" / "content", actor="tester")
    seed = 900_000 + int(datetime.now(UTC).timestamp()) % 100_000
    now = datetime(2026, 6, 30, 12, tzinfo=UTC)
    report = demo.seed(session, SeedSpec(hcps=120, days=30, seed=seed, end=END), now=now)
    assert report.counts["hcp"] == 120
    assert report.counts["conversation"] > 100 and report.counts["message"] > 3 * report.counts["conversation"]
    for table in ("answer", "answer_rating", "handoff", "service_request", "survey_response", "feedback_comment"):
        assert report.counts[table] > 0, table

    tag = f"DEMO-{seed}-%"
    hcp_ids = select(Hcp.id).where(Hcp.licence_id.like(tag))
    assert session.execute(select(func.count()).select_from(Hcp).where(Hcp.licence_id.like(tag))).scalar_one() == 120
    # answers reference real, current content versions of the demo library
    current = {(c, v) for c, v in session.execute(
        select(ContentVersion.content_id, ContentVersion.version).where(ContentVersion.is_current.is_(True)))}
    answered = {(str(c), v) for c, v in session.execute(select(Answer.content_id, Answer.content_version).where(
        Answer.decision == "answer", Answer.created_at >= datetime(2026, 6, 1, tzinfo=UTC),
        Answer.created_at < datetime(2026, 7, 1, tzinfo=UTC), Answer.query != ""))}
    assert answered and answered <= current
    sent = session.execute(select(func.count()).select_from(Message).where(
        Message.content_id.is_not(None), Message.approval_code.is_(None))).scalar_one()
    assert sent == 0
    categories = set(session.scalars(select(FeedbackComment.category).where(FeedbackComment.hcp_id.in_(hcp_ids))))
    # The seed differs per run (a used seed is refused on the shared test database) and 120 HCPs leave
    # only a few dozen comments, so which themes appear varies; all of them must be known ones.
    assert categories and categories <= {"service", "frequency", "content", "channel", "other"}

    f = kpis.KpiFilter(datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))
    t = kpis.tiles(session, f)
    assert t.csat.mean is not None and 2.5 < t.csat.mean < 5
    # NPS rests on a handful of answers here (at most one per HCP per 90 days): only its range is stable.
    assert t.nps.score is not None and t.nps.n > 0 and -100 <= t.nps.score <= 100
    assert 0.5 < (t.conversations.containment.rate or 0) < 0.99
    assert 0.03 < (t.escalation.rate or 0) < 0.3
    assert 0.5 < (t.helpfulness.rate or 0) < 0.95
    assert t.handoffs.time_to_human.median_s is not None and t.requests.time_to_resolution.median_s is not None
    assert len(kpis.by_product(session, f)) >= 3

    with pytest.raises(demo.AlreadySeeded):
        demo.seed(session, SeedSpec(hcps=5, days=3, seed=seed, end=END), now=now + timedelta(minutes=1))


def test_the_command_line_refuses_bad_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "seed", "--hcps", "0"])
    assert "at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "seed", "--until", "yesterday"])


def test_make_run_seeds_an_empty_database_once(tmp_path: Path) -> None:
    from api.db import make_engine, make_session_factory, unit_of_work
    from api.demo.cli import seed_database
    from api.migrate import upgrade
    from api.settings import Settings

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'run.db'}", var_dir=tmp_path)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    factory = make_session_factory(engine)
    with unit_of_work(factory) as s:
        assert seed_database(settings, hcps=5, days=5, seed=3, only_if_empty=True, quiet=True) == 1  # no content
        load_library(s, settings.library_path, actor="tester")
    assert seed_database(settings, hcps=30, days=20, seed=3, only_if_empty=True, quiet=True, themes="hashing") == 0
    assert seed_database(settings, hcps=30, days=20, seed=4, only_if_empty=True, quiet=True) == 0
    with factory() as s:
        licences = s.scalars(select(Hcp.licence_id)).all()
        until = datetime.combine(date.today() + timedelta(days=1), datetime.min.time(), UTC)
        themes = kpis.themes(s, kpis.KpiFilter(until - timedelta(days=20), until), redact=str.strip)
    assert themes.available and themes.themes and sum(t.count for t in themes.themes) > 0
    engine.dispose()
    assert len(licences) == 30 and all(str(x).startswith("DEMO-3-") for x in licences)
